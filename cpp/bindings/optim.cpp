// regtune._core optimizers and penalties: optim_step, clip_grad_norm, clip_grad_value,
// penalty_sums, add_penalty_grad, prox_l1.
//
// The Python layer checks hyperparameters and list lengths with friendly messages; here every
// array is checked (exact dtype, C-contiguous, writable where written, shapes matching) before
// its pointer is taken, so no call can crash or update a copy. Pointers and sizes are gathered
// while holding the GIL; the kernels run without it.
#include <algorithm>
#include <cmath>
#include <functional>
#include <type_traits>
#include <string>
#include <vector>

#include "common.h"
#include "regtune/optim.h"

namespace regtune::bind {

namespace {

std::string item(const std::string& name, size_t i) { return name + "[" + std::to_string(i) + "]"; }

std::string shape_str(const py::array& a) { return std::string(py::str(a.attr("shape"))); }

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) != b.shape(d)) return false;
  }
  return true;
}

// A checked step, ready to run without the GIL: `run` reads only plain pointers and sizes
// (copies of what the checks gathered); `keep` holds the arrays they point into, released with
// the GIL held when the Job goes. optim_step and its kin build one Job and run it; optim_steps
// builds a Job per call first (nothing runs if any check fails), then runs them all, in order,
// in one release of the GIL.
struct Job {
  std::function<double()> run;
  std::vector<py::object> keep;
  bool wants_norm = false;  // max_grad_norm > 0: the call returns the norm
};

py::object norm_or_none(const Job& job, double norm) { return job.wants_norm ? py::object(py::float_(norm)) : py::object(py::none()); }

py::object run_job(Job job) {
  double norm;
  {
    py::gil_scoped_release nogil;
    norm = job.run();
  }
  return norm_or_none(job, norm);
}

using Spans = std::vector<std::pair<const char*, const char*>>;

// The byte ranges a step writes (params, masters, state, averages) must be disjoint, and no
// gradient may read a written byte (gradients may share memory with each other): each element
// is read and written exactly once, whatever the threads' order. Sorted sweeps, O(n log n).
// The messages say "share memory"; regtune.optim then names the two arrays.
void check_spans(Spans& written, Spans& read) {
  auto empty = [](const std::pair<const char*, const char*>& x) { return x.first == x.second; };
  written.erase(std::remove_if(written.begin(), written.end(), empty), written.end());
  read.erase(std::remove_if(read.begin(), read.end(), empty), read.end());
  std::sort(written.begin(), written.end());
  for (size_t j = 1; j < written.size(); ++j) {
    if (written[j].first < written[j - 1].second) {
      throw py::value_error("params and optimizer state must not share memory (an array appears twice)");
    }
  }
  // Disjoint and sorted by start, the written ranges are sorted by end too.
  std::sort(read.begin(), read.end());
  size_t w = 0;
  for (const auto& r : read) {
    while (w < written.size() && written[w].second <= r.first) ++w;
    if (w < written.size() && written[w].first < r.second) {
      throw py::value_error("a gradient must not share memory with a parameter or a state buffer");
    }
  }
}

// The pointers and sizes of a list of arrays of one dtype (U = T when written, const T when read).
template <typename U>
struct Gathered {
  std::vector<py::array> arrays;
  std::vector<U*> data;
  std::vector<size_t> sizes;
  TensorList<U> list() const { return {data.size(), data.data(), sizes.data()}; }
  // Hands the arrays to `keep` (the pointers stay valid while it holds them).
  void release_to(std::vector<py::object>& keep) {
    for (auto& a : arrays) keep.push_back(std::move(a));
    arrays.clear();
  }
};

// Checks and gathers `seq` (named `name`); with `like`, each array must have the shape of the
// matching array there (named `like_name`).
template <typename U>
Gathered<U> gather(const py::sequence& seq, const std::string& name, const Gathered<U>* like = nullptr,
                   const std::string& like_name = "") {
  using T = std::remove_const_t<U>;
  Gathered<U> g;
  const size_t n = size_t(py::len(seq));
  if (like && n != like->arrays.size()) {
    throw py::value_error(name + " has " + std::to_string(n) + " arrays but " + like_name + " has " +
                          std::to_string(like->arrays.size()));
  }
  g.arrays.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string label = item(name, i);
    py::object obj = seq[i];
    py::array a = std::is_const_v<U> ? readable_array<T>(obj, label.c_str()) : writable_array<T>(obj, label.c_str());
    if (like && !same_shape(a, like->arrays[i])) {
      throw py::value_error(label + " has shape " + shape_str(a) + " but " + item(like_name, i) + " has shape " +
                            shape_str(like->arrays[i]));
    }
    g.sizes.push_back(size_t(a.size()));
    if constexpr (std::is_const_v<U>) {
      g.data.push_back(static_cast<U*>(a.data()));
    } else {
      g.data.push_back(static_cast<U*>(a.mutable_data()));
    }
    g.arrays.push_back(std::move(a));
  }
  return g;
}

// The step coefficients from a dict of numbers: a number key switches its term on
// (clip, l1, decay, wd, prox, momentum, rect, ema_weight), a flag key holds a bool.
OptimArgs<double> parse_args(const py::dict& d) {
  OptimArgs<double> a;
  struct Num { const char* key; double* field; bool* on; };
  struct Flag { const char* key; bool* field; };
  const Num nums[] = {{"clip", &a.clip, &a.clip_on},      {"l1", &a.l1, &a.l1_on},
                      {"decay", &a.decay, &a.decay_on},   {"wd", &a.wd, &a.wd_on},
                      {"prox", &a.prox, &a.prox_on},      {"momentum", &a.momentum, &a.momentum_on},
                      {"step", &a.step, nullptr},         {"damp_weight", &a.damp_weight, nullptr},
                      {"avg_weight", &a.avg_weight, nullptr}, {"sq_decay", &a.sq_decay, nullptr},
                      {"sq_weight", &a.sq_weight, nullptr},   {"bc2_sqrt", &a.bc2_sqrt, nullptr},
                      {"eps", &a.eps, nullptr},           {"step2", &a.step2, nullptr},
                      {"bc2", &a.bc2, nullptr},           {"bc1", &a.bc1, nullptr},
                      {"scale", &a.scale, nullptr},       {"rect", &a.rect, &a.rect_on},
                      {"ema_weight", &a.ema_weight, &a.ema_on}, {"ema_count", &a.ema_count, &a.ema_mean},
                      {"update_wd", &a.update_wd, &a.update_wd_on}, {"trust_clamp", &a.trust_clamp, nullptr},
                      {"trust_coef", &a.trust_coef, nullptr}};
  const Flag flags[] = {{"first_step", &a.first_step}, {"nesterov", &a.nesterov},
                        {"amsgrad", &a.amsgrad},       {"centered", &a.centered},
                        {"ema_copy", &a.ema_copy}};
  size_t known = 0;
  for (const auto& x : nums) {
    if (d.contains(x.key)) {
      *x.field = d[x.key].cast<double>();
      if (x.on) *x.on = true;
      ++known;
    }
  }
  for (const auto& x : flags) {
    if (d.contains(x.key)) {
      *x.field = d[x.key].cast<bool>();
      ++known;
    }
  }
  if (known != size_t(py::len(d))) throw py::value_error("optim_step: unknown coefficient in " + std::string(py::repr(d)));
  return a;
}

template <typename T>
Job step_typed(int kind, const py::sequence& params, const py::sequence& grads, const py::sequence& states,
               const py::sequence& state_names, const py::dict& args_dict, double max_grad_norm) {
  auto p = gather<T>(params, "params");
  auto g = gather<const T>(grads, "grads");
  if (g.arrays.size() != p.arrays.size()) {
    throw py::value_error("grads has " + std::to_string(g.arrays.size()) + " arrays but params has " +
                          std::to_string(p.arrays.size()));
  }
  for (size_t i = 0; i < g.arrays.size(); ++i) {
    if (!same_shape(g.arrays[i], p.arrays[i])) {
      throw py::value_error(item("grads", i) + " has shape " + shape_str(g.arrays[i]) + " but " + item("params", i) +
                            " has shape " + shape_str(p.arrays[i]));
    }
  }
  if (py::len(states) != 4 || py::len(state_names) != 4) throw py::value_error("optim_step: states must list 4 slots");
  const OptimArgs<double> args = parse_args(args_dict);
  // The averages (states[3]) go with ema_weight, except in kind `average`, where they are params.
  if (kind != int(OptimKind::average) && args.ema_on != !py::object(states[3]).is_none()) {
    throw py::value_error("optim_step: the averages (states[3]) go with ema_weight");
  }
  std::vector<Gathered<T>> s;
  s.reserve(4);
  int slot[4] = {-1, -1, -1, -1};  // state k's entry in s
  for (size_t k = 0; k < 4; ++k) {
    py::object lst = states[k];
    if (lst.is_none()) continue;
    s.push_back(gather<T>(lst.cast<py::sequence>(), py::str(state_names[k]).cast<std::string>(), &p, "params"));
    slot[k] = int(s.size()) - 1;
  }
  // No two written arrays may overlap: each element must be updated exactly once.
  Spans spans, reads;
  for (size_t i = 0; i < p.data.size(); ++i) {
    auto add = [&](const T* ptr) { spans.emplace_back(reinterpret_cast<const char*>(ptr), reinterpret_cast<const char*>(ptr + p.sizes[i])); };
    add(p.data[i]);
    for (const auto& st : s) add(st.data[i]);
    reads.emplace_back(reinterpret_cast<const char*>(g.data[i]), reinterpret_cast<const char*>(g.data[i] + g.sizes[i]));
  }
  check_spans(spans, reads);
  // LARS adapts the tensors of more than one dimension (weights), not biases or norm scales.
  std::vector<unsigned char> adapt;
  if (kind == int(OptimKind::lars)) {
    for (const auto& a : p.arrays) adapt.push_back(a.ndim() > 1);
  }
  Job job;
  job.wants_norm = max_grad_norm > 0;
  p.release_to(job.keep);
  g.release_to(job.keep);
  for (auto& st : s) st.release_to(job.keep);
  job.run = [kind, p = std::move(p), g = std::move(g), s = std::move(s), slot0 = slot[0], slot1 = slot[1],
             slot2 = slot[2], slot3 = slot[3], args, max_grad_norm, adapt = std::move(adapt)]() {
    const int slots[4] = {slot0, slot1, slot2, slot3};
    T* const* sp[4];
    for (int k = 0; k < 4; ++k) sp[k] = slots[k] < 0 ? nullptr : s[size_t(slots[k])].data.data();
    return optim_step<T>(OptimKind(kind), p.list(), g.list(), sp, args, max_grad_norm,
                         adapt.empty() ? nullptr : adapt.data());
  };
  return job;
}

bool first_is_f64(const py::sequence& seq) { return py::len(seq) > 0 && has_dtype(seq[0], py::dtype::of<double>()); }

std::string shape_of(const std::vector<py::ssize_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += std::to_string(s[i]) + (s.size() == 1 ? "," : i + 1 < s.size() ? ", " : "");
  return out + ")";
}

// Entry i of the list `seq` (named `name`, n entries) of an Adafactor buffer: a writable array of
// T and exactly `shape`; its span is recorded for the overlap check and the array kept alive.
template <typename T>
T* take_buffer(const py::sequence& seq, const char* name, size_t i, size_t n, const std::vector<py::ssize_t>& shape,
               std::vector<std::pair<const char*, const char*>>& spans, std::vector<py::array>& keep) {
  if (size_t(py::len(seq)) != n) {
    throw py::value_error(std::string(name) + " has " + std::to_string(py::len(seq)) + " arrays but params has " +
                          std::to_string(n));
  }
  const std::string label = item(name, i);
  py::array a = writable_array<T>(seq[i], label.c_str());
  std::vector<py::ssize_t> got(a.shape(), a.shape() + a.ndim());
  if (got != shape) throw py::value_error(label + " has shape " + shape_str(a) + " but must have shape " + shape_of(shape));
  T* ptr = static_cast<T*>(a.mutable_data());
  spans.emplace_back(reinterpret_cast<const char*>(ptr), reinterpret_cast<const char*>(ptr + a.size()));
  keep.push_back(std::move(a));
  return ptr;
}

// Adafactor's view of a tensor of `shape`: factored over its last two axes (batches x rows x
// cols) with row_var and col_var of their shapes (`take` checks and returns them), or a
// vector (1 x 1 x n) with a variance of its own shape.
template <typename T, typename Take>
void adafactor_buffers(const std::vector<py::ssize_t>& shape, size_t n, size_t i, Take take, unsigned char& factored,
                       size_t& batches, size_t& rows, size_t& cols, T*& rv, T*& cv, T*& var,
                       const py::sequence& row_vars, const py::sequence& col_vars, const py::sequence& variances) {
  factored = shape.size() > 1;
  if (factored) {
    const size_t d = shape.size();
    rows = size_t(shape[d - 2]), cols = size_t(shape[d - 1]);
    batches = 1;
    for (size_t k = 0; k + 2 < d; ++k) batches *= size_t(shape[k]);
    auto rshape = shape, cshape = shape;
    rshape[d - 1] = 1, cshape[d - 2] = 1;
    rv = take(row_vars, "state['row_var']", i, rshape);
    cv = take(col_vars, "state['col_var']", i, cshape);
  } else {
    batches = 1, rows = 1, cols = n;
    var = take(variances, "state['variance']", i, shape);
  }
}

// torch.optim.Adafactor's step: a tensor of more than one dimension keeps row_var (its shape
// with the last axis 1) and col_var (the second-last axis 1), any other keeps variance (its
// shape); each list holds None where the tensor has no such buffer.
template <typename T>
Job adafactor_typed(const py::sequence& params, const py::sequence& grads, const py::sequence& row_vars,
                    const py::sequence& col_vars, const py::sequence& variances, const py::object& emas,
                    const py::dict& args_dict, const py::dict& scalars, double max_grad_norm) {
  auto p = gather<T>(params, "params");
  auto g = gather<const T>(grads, "grads");
  const size_t n = p.arrays.size();
  if (g.arrays.size() != n) {
    throw py::value_error("grads has " + std::to_string(g.arrays.size()) + " arrays but params has " + std::to_string(n));
  }
  const OptimArgs<double> args = parse_args(args_dict);
  if (args.ema_on == emas.is_none()) throw py::value_error("adafactor_step: the averages go with ema_weight");
  AdafactorScalars sc;
  sc.rho = scalars["rho"].cast<double>(), sc.eps1 = scalars["eps1"].cast<double>();
  sc.eps2 = scalars["eps2"].cast<double>(), sc.d = scalars["d"].cast<double>();
  std::vector<py::array> keep;
  std::vector<T*> rv(n, nullptr), cv(n, nullptr), var(n, nullptr), ema(n, nullptr);
  std::vector<size_t> batches(n), rows(n), cols(n);
  std::vector<unsigned char> factored(n);
  Spans spans, reads;
  auto take = [&](const py::sequence& seq, const char* name, size_t i, std::vector<py::ssize_t> shape) -> T* {
    return take_buffer<T>(seq, name, i, n, shape, spans, keep);
  };
  for (size_t i = 0; i < n; ++i) {
    const py::array& a = p.arrays[i];
    if (!same_shape(g.arrays[i], a)) {
      throw py::value_error(item("grads", i) + " has shape " + shape_str(g.arrays[i]) + " but " + item("params", i) +
                            " has shape " + shape_str(a));
    }
    std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
    spans.emplace_back(reinterpret_cast<const char*>(p.data[i]), reinterpret_cast<const char*>(p.data[i] + p.sizes[i]));
    reads.emplace_back(reinterpret_cast<const char*>(g.data[i]), reinterpret_cast<const char*>(g.data[i] + g.sizes[i]));
    adafactor_buffers<T>(shape, p.sizes[i], i, take, factored[i], batches[i], rows[i], cols[i], rv[i], cv[i], var[i],
                         row_vars, col_vars, variances);
    if (!emas.is_none()) ema[i] = take(emas.cast<py::sequence>(), "ema.averages", i, shape);
  }
  check_spans(spans, reads);
  Job job;
  job.wants_norm = max_grad_norm > 0;
  p.release_to(job.keep);
  g.release_to(job.keep);
  for (auto& a : keep) job.keep.push_back(std::move(a));
  job.run = [p = std::move(p), g = std::move(g), rv = std::move(rv), cv = std::move(cv), var = std::move(var),
             ema = std::move(ema), with_ema = !emas.is_none(), batches = std::move(batches), rows = std::move(rows),
             cols = std::move(cols), factored = std::move(factored), args, sc, max_grad_norm]() {
    return adafactor_step<T>(p.list(), g.list(), rv.data(), cv.data(), var.data(), with_ema ? ema.data() : nullptr,
                             batches.data(), rows.data(), cols.data(), factored.data(), args, sc, max_grad_norm);
  };
  return job;
}

// ---------------------------------------------------------------------- low precision
DType dtype_code(FloatKind k) { return k == FloatKind::bf16 ? DType::bf16 : k == FloatKind::f16 ? DType::f16 : DType::f32; }
const char* dtype_label(DType d) { return d == DType::bf16 ? "bfloat16" : d == DType::f16 ? "float16" : "float32"; }

// An array of a low-precision step: C-contiguous, writable when written, of dtype `want` or
// (when `or_f32`) float32, shaped as `like` when given. Returns the array and its dtype.
std::pair<py::array, DType> low_array(const py::object& obj, const std::string& label, DType want, bool or_f32,
                                      bool write, const py::array* like, const std::string& like_label) {
  const FloatKind k = float_kind(obj);
  if (!py::isinstance<py::array>(obj)) throw py::type_error(label + " must be a numpy.ndarray");
  auto a = py::reinterpret_borrow<py::array>(obj);
  const DType d = dtype_code(k);
  if (k == FloatKind::other || k == FloatKind::f64 || (d != want && !(or_f32 && d == DType::f32))) {
    throw py::type_error(label + " must have dtype " + dtype_label(want) + (or_f32 && want != DType::f32 ? " or float32" : "") +
                         ", got " + std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(label + " must be C-contiguous");
  if (write && !a.writeable()) throw py::value_error(label + " must be writable");
  if (like && !same_shape(a, *like)) {
    throw py::value_error(label + " has shape " + shape_str(a) + " but " + like_label + " has shape " + shape_str(*like));
  }
  return {a, d};
}

// Tensor i's parameter p (dtype pd) in t: itself, or with `masters` its float32 master copy (the
// step's parameter; p receives its rounding), and its gradient (the params' 16-bit dtype pdt or
// float32). The written ranges go to `spans`, the gradient's to `reads`, the arrays to `keep`.
void low_param_grad(LowTensor& t, py::array& p, DType pd, DType pdt, const py::object& masters,
                    const py::sequence& grads, size_t i, const std::string& pl, Spans& spans, Spans& reads,
                    std::vector<py::array>& keep) {
  spans.emplace_back(static_cast<const char*>(p.data()), static_cast<const char*>(p.data()) + p.nbytes());
  if (!masters.is_none()) {
    auto [mst, md] = low_array(masters.cast<py::sequence>()[i], item("masters", i), DType::f32, false, true, &p, pl);
    (void)md;
    t.param = mst.mutable_data(), t.param_dt = DType::f32;
    t.shadow = p.mutable_data(), t.shadow_dt = pdt;
    spans.emplace_back(static_cast<const char*>(mst.data()), static_cast<const char*>(mst.data()) + mst.nbytes());
    keep.push_back(mst);
  } else {
    t.param = p.mutable_data(), t.param_dt = pd;
  }
  auto [g, gd] = low_array(grads[i], item("grads", i), pdt, true, false, &p, pl);
  reads.emplace_back(static_cast<const char*>(g.data()), static_cast<const char*>(g.data()) + g.nbytes());
  t.grad = g.data(), t.grad_dt = gd;
  keep.push_back(g);
  keep.push_back(p);
}

Job step_low(int kind, const py::sequence& params, const py::sequence& grads, const py::sequence& states,
             const py::sequence& state_names, const py::dict& args_dict, double max_grad_norm,
             const py::object& masters, const py::object& seed, uint64_t step) {
  const size_t n = size_t(py::len(params));
  if (size_t(py::len(grads)) != n) {
    throw py::value_error("grads has " + std::to_string(py::len(grads)) + " arrays but params has " + std::to_string(n));
  }
  if (py::len(states) != 4 || py::len(state_names) != 4) throw py::value_error("optim_step_low: states must list 4 slots");
  const OptimArgs<double> args = parse_args(args_dict);
  if (kind != int(OptimKind::average) && args.ema_on != !py::object(states[3]).is_none()) {
    throw py::value_error("optim_step_low: the averages (states[3]) go with ema_weight");
  }
  if (!masters.is_none() && size_t(py::len(masters)) != n) {
    throw py::value_error("masters has " + std::to_string(py::len(masters)) + " arrays but params has " + std::to_string(n));
  }
  std::vector<py::array> keep;
  std::vector<LowTensor> tensors(n);
  std::vector<size_t> sizes(n);
  Spans spans, reads;
  const bool stochastic = !seed.is_none();
  const uint64_t key = stochastic ? seed.cast<uint64_t>() : 0;
  if (stochastic && n >= (size_t(1) << 24)) throw py::value_error("optim_step_low: at most 2**24 tensors");
  DType pdt = DType::bf16;
  // The state's dtype: that of the first state array given (float32 or the params' dtype).
  DType state_dt = DType::f32;
  for (size_t k = 0; k < 3; ++k) {
    py::object lst = states[k];
    if (lst.is_none() || py::len(lst) == 0) continue;
    const FloatKind sk = float_kind(lst.cast<py::sequence>()[0]);
    state_dt = dtype_code(sk);
    break;
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string pl = item("params", i);
    if (i == 0) {
      // The weight average's update (kind average) steps float32 averages toward 16-bit params.
      const bool average = kind == int(OptimKind::average);
      const FloatKind k0 = float_kind(average ? py::object(grads[0]) : py::object(params[0]));
      if (k0 != FloatKind::bf16 && k0 != FloatKind::f16) {
        throw py::type_error(std::string(average ? "grads[0]" : "params[0]") + " must have dtype bfloat16 or float16 for a low-precision step");
      }
      pdt = dtype_code(k0);
      if (state_dt != DType::f32 && state_dt != pdt) {
        throw py::type_error(std::string("the optimizer state must be float32 or ") + dtype_label(pdt));
      }
    }
    auto [p, pd] = low_array(params[i], pl, pdt, kind == int(OptimKind::average), true, nullptr, "");
    LowTensor& t = tensors[i];
    sizes[i] = size_t(p.size());
    low_param_grad(t, p, pd, pdt, masters, grads, i, pl, spans, reads, keep);
    for (size_t k = 0; k < 4; ++k) {
      py::object lst = states[k];
      if (lst.is_none()) continue;
      const std::string name = py::str(state_names[k]).cast<std::string>();
      auto seq = lst.cast<py::sequence>();
      if (size_t(py::len(seq)) != n) {
        throw py::value_error(name + " has " + std::to_string(py::len(seq)) + " arrays but params has " + std::to_string(n));
      }
      // The averages of 16-bit params are float32; the state buffers share one dtype.
      const DType want = k == 3 ? DType::f32 : state_dt;
      auto [sa, sd] = low_array(seq[i], item(name, i), want, false, true, &p, pl);
      if (k < 3) {
        t.state[k] = sa.mutable_data(), t.state_dt[k] = sd;
      } else {
        t.ema = sa.mutable_data(), t.ema_dt = sd;
      }
      spans.emplace_back(static_cast<const char*>(sa.data()), static_cast<const char*>(sa.data()) + sa.nbytes());
      keep.push_back(sa);
    }
    if (stochastic) {
      t.stochastic = true;
      t.sr = {key, (step << 24) | uint64_t(i)};
    }
  }
  if (stochastic && step >= (uint64_t(1) << 40)) throw py::value_error("optim_step_low: step must be < 2**40");
  check_spans(spans, reads);
  std::vector<unsigned char> adapt;
  if (kind == int(OptimKind::lars)) {
    for (size_t i = 0; i < n; ++i) adapt.push_back(py::reinterpret_borrow<py::array>(params[i]).ndim() > 1);
  }
  Job job;
  job.wants_norm = max_grad_norm > 0;
  for (auto& a : keep) job.keep.push_back(std::move(a));
  job.run = [kind, tensors = std::move(tensors), sizes = std::move(sizes), n, args, max_grad_norm,
             adapt = std::move(adapt)]() {
    return optim_step_low(OptimKind(kind), tensors.data(), sizes.data(), n, args, max_grad_norm,
                          adapt.empty() ? nullptr : adapt.data());
  };
  return job;
}

// A list of float32 / bfloat16 / float16 arrays (each C-contiguous; writable when `write`).
struct LowList {
  std::vector<py::array> arrays;
  std::vector<void*> data;
  std::vector<DType> dts;
  std::vector<size_t> sizes;
};
LowList gather_low(const py::sequence& seq, const std::string& name, bool write) {
  LowList l;
  for (size_t i = 0; i < size_t(py::len(seq)); ++i) {
    const std::string label = item(name, i);
    const FloatKind k = float_kind(seq[i]);
    const DType want = k == FloatKind::bf16 || k == FloatKind::f16 ? dtype_code(k) : DType::f32;
    auto [a, d] = low_array(seq[i], label, want, true, write, nullptr, "");
    l.data.push_back(write ? a.mutable_data() : const_cast<void*>(a.data()));
    l.dts.push_back(d);
    l.sizes.push_back(size_t(a.size()));
    l.arrays.push_back(a);
  }
  return l;
}

// torch.optim.Adafactor's step on 16-bit params (float32 factors, variances and averages).
Job adafactor_low(const py::sequence& params, const py::sequence& grads, const py::sequence& row_vars,
                         const py::sequence& col_vars, const py::sequence& variances, const py::object& emas,
                         const py::dict& args_dict, const py::dict& scalars, double max_grad_norm,
                         const py::object& masters, const py::object& seed, uint64_t step) {
  const size_t n = size_t(py::len(params));
  if (size_t(py::len(grads)) != n) {
    throw py::value_error("grads has " + std::to_string(py::len(grads)) + " arrays but params has " + std::to_string(n));
  }
  const OptimArgs<double> args = parse_args(args_dict);
  if (args.ema_on == emas.is_none()) throw py::value_error("adafactor_step_low: the averages go with ema_weight");
  AdafactorScalars sc;
  sc.rho = scalars["rho"].cast<double>(), sc.eps1 = scalars["eps1"].cast<double>();
  sc.eps2 = scalars["eps2"].cast<double>(), sc.d = scalars["d"].cast<double>();
  if (!masters.is_none() && size_t(py::len(masters)) != n) {
    throw py::value_error("masters has " + std::to_string(py::len(masters)) + " arrays but params has " + std::to_string(n));
  }
  const bool stochastic = !seed.is_none();
  const uint64_t key = stochastic ? seed.cast<uint64_t>() : 0;
  if (stochastic && (n >= (size_t(1) << 24) || step >= (uint64_t(1) << 40))) {
    throw py::value_error("adafactor_step_low: at most 2**24 tensors and 2**40 steps");
  }
  std::vector<py::array> keep;
  std::vector<LowTensor> tensors(n);
  std::vector<size_t> sizes(n), batches(n), rows(n), cols(n);
  std::vector<float*> rv(n, nullptr), cv(n, nullptr), var(n, nullptr);
  std::vector<unsigned char> factored(n);
  Spans spans, reads;
  auto take = [&](const py::sequence& seq, const char* name, size_t i, std::vector<py::ssize_t> shape) -> float* {
    return take_buffer<float>(seq, name, i, n, shape, spans, keep);
  };
  DType pdt = DType::bf16;
  for (size_t i = 0; i < n; ++i) {
    const std::string pl = item("params", i);
    if (i == 0) {
      const FloatKind k0 = float_kind(params[0]);
      if (k0 != FloatKind::bf16 && k0 != FloatKind::f16) throw py::type_error(pl + " must have dtype bfloat16 or float16");
      pdt = dtype_code(k0);
    }
    auto [p, pd] = low_array(params[i], pl, pdt, false, true, nullptr, "");
    LowTensor& t = tensors[i];
    sizes[i] = size_t(p.size());
    std::vector<py::ssize_t> shape(p.shape(), p.shape() + p.ndim());
    low_param_grad(t, p, pd, pdt, masters, grads, i, pl, spans, reads, keep);
    adafactor_buffers<float>(shape, sizes[i], i, take, factored[i], batches[i], rows[i], cols[i], rv[i], cv[i],
                             var[i], row_vars, col_vars, variances);
    if (!emas.is_none()) t.ema = take(emas.cast<py::sequence>(), "ema.averages", i, shape), t.ema_dt = DType::f32;
    if (stochastic) t.stochastic = true, t.sr = {key, (step << 24) | uint64_t(i)};
  }
  check_spans(spans, reads);
  Job job;
  job.wants_norm = max_grad_norm > 0;
  for (auto& a : keep) job.keep.push_back(std::move(a));
  job.run = [tensors = std::move(tensors), sizes = std::move(sizes), n, rv = std::move(rv), cv = std::move(cv),
             var = std::move(var), batches = std::move(batches), rows = std::move(rows), cols = std::move(cols),
             factored = std::move(factored), args, sc, max_grad_norm]() {
    return adafactor_step_low(tensors.data(), sizes.data(), n, rv.data(), cv.data(), var.data(), batches.data(),
                              rows.data(), cols.data(), factored.data(), args, sc, max_grad_norm);
  };
  return job;
}

bool any_low(const py::sequence& seq) {
  for (size_t i = 0; i < size_t(py::len(seq)); ++i) {
    const FloatKind k = float_kind(seq[i]);
    if (k == FloatKind::bf16 || k == FloatKind::f16) return true;
  }
  return false;
}

// The four step calls as Jobs (their checks first, in the caller's thread with the GIL).
Job optim_step_job(int kind, const py::sequence& params, const py::sequence& grads, const py::sequence& states,
                   const py::sequence& state_names, const py::dict& args, double max_grad_norm) {
  if (kind < 0 || kind >= kOptimKinds) throw py::value_error("optim_step: unknown kind " + std::to_string(kind));
  if (first_is_f64(params)) return step_typed<double>(kind, params, grads, states, state_names, args, max_grad_norm);
  return step_typed<float>(kind, params, grads, states, state_names, args, max_grad_norm);
}

Job optim_step_low_job(int kind, const py::sequence& params, const py::sequence& grads, const py::sequence& states,
                       const py::sequence& state_names, const py::dict& args, double max_grad_norm,
                       const py::object& masters, const py::object& seed, uint64_t step) {
  if (kind < 0 || kind >= kOptimKinds) throw py::value_error("optim_step_low: unknown kind " + std::to_string(kind));
  return step_low(kind, params, grads, states, state_names, args, max_grad_norm, masters, seed, step);
}

Job adafactor_step_job(const py::sequence& params, const py::sequence& grads, const py::sequence& row_vars,
                       const py::sequence& col_vars, const py::sequence& variances, const py::object& emas,
                       const py::dict& args, const py::dict& scalars, double max_grad_norm) {
  if (first_is_f64(params)) {
    return adafactor_typed<double>(params, grads, row_vars, col_vars, variances, emas, args, scalars, max_grad_norm);
  }
  return adafactor_typed<float>(params, grads, row_vars, col_vars, variances, emas, args, scalars, max_grad_norm);
}

// One call of optim_steps: (name, arguments) with name one of the four step functions and the
// arguments as that function takes them, positionally.
Job job_of(const py::handle& call, size_t i) {
  const std::string label = "calls[" + std::to_string(i) + "]";
  if (!py::isinstance<py::tuple>(call) || py::len(call) != 2) throw py::type_error(label + " must be a (name, arguments) tuple");
  const auto c = py::reinterpret_borrow<py::tuple>(call);
  if (!py::isinstance<py::str>(c[0]) || !py::isinstance<py::tuple>(c[1])) {
    throw py::type_error(label + " must be a (name, arguments) tuple");
  }
  const std::string name = c[0].cast<std::string>();
  const auto a = c[1].cast<py::tuple>();
  auto want = [&](size_t n) {
    if (py::len(a) != n) {
      throw py::type_error(label + ": " + name + " takes " + std::to_string(n) + " arguments, got " + std::to_string(py::len(a)));
    }
  };
  auto seq = [&](size_t k) { return a[k].cast<py::sequence>(); };
  if (name == "optim_step") {
    want(7);
    return optim_step_job(a[0].cast<int>(), seq(1), seq(2), seq(3), seq(4), a[5].cast<py::dict>(), a[6].cast<double>());
  }
  if (name == "optim_step_low") {
    want(10);
    return optim_step_low_job(a[0].cast<int>(), seq(1), seq(2), seq(3), seq(4), a[5].cast<py::dict>(),
                              a[6].cast<double>(), a[7], a[8], a[9].cast<uint64_t>());
  }
  if (name == "adafactor_step") {
    want(9);
    return adafactor_step_job(seq(0), seq(1), seq(2), seq(3), seq(4), a[5], a[6].cast<py::dict>(),
                              a[7].cast<py::dict>(), a[8].cast<double>());
  }
  if (name == "adafactor_step_low") {
    want(12);
    return adafactor_low(seq(0), seq(1), seq(2), seq(3), seq(4), a[5], a[6].cast<py::dict>(), a[7].cast<py::dict>(),
                         a[8].cast<double>(), a[9], a[10], a[11].cast<uint64_t>());
  }
  throw py::value_error(label + ": unknown step function '" + name + "'");
}

}  // namespace

void register_optim(py::module_& m) {
  m.def(
      "optim_step_low",
      [](int kind, const py::sequence& params, const py::sequence& grads, const py::sequence& states,
         const py::sequence& state_names, const py::dict& args, double max_grad_norm, const py::object& masters,
         const py::object& seed, uint64_t step) -> py::object {
        return run_job(optim_step_low_job(kind, params, grads, states, state_names, args, max_grad_norm, masters, seed, step));
      },
      py::arg("kind"), py::arg("params"), py::arg("grads"), py::arg("states"), py::arg("state_names"), py::arg("args"),
      py::arg("max_grad_norm"), py::arg("masters"), py::arg("seed"), py::arg("step"),
      "optim_step on bfloat16/float16 params (one dtype): grads and each state list in that dtype or float32, "
      "float32 arithmetic; masters: None, or float32 master copies (the step's parameters; params receive their "
      "rounding to nearest); seed: None (round to nearest) or the key of stochastic rounding, word i of stream "
      "step * 2**24 + t rounding element i of tensor t.");
  m.def(
      "optim_step",
      [](int kind, const py::sequence& params, const py::sequence& grads, const py::sequence& states,
         const py::sequence& state_names, const py::dict& args, double max_grad_norm) -> py::object {
        return run_job(optim_step_job(kind, params, grads, states, state_names, args, max_grad_norm));
      },
      py::arg("kind"), py::arg("params"), py::arg("grads"), py::arg("states"), py::arg("state_names"), py::arg("args"),
      py::arg("max_grad_norm"),
      "One step of optimizer `kind` (0 sgd, 1 adam, 2 rmsprop, 3 adagrad, 5 lion, 6 nadam, 7 radam, 8 adamax, "
      "9 adadelta, 11 lamb, 12 lars; 4 the roofline yardstick of the benchmarks: a step's traffic, an add per array; 10 the weight "
      "average's update alone, params := the averages, grads := the parameters) over the whole list, in one pass; "
      "states: 3 state lists and the averages (or None each); returns the global grad norm when "
      "max_grad_norm > 0, else None.");
  m.def(
      "adafactor_step",
      [](const py::sequence& params, const py::sequence& grads, const py::sequence& row_vars,
         const py::sequence& col_vars, const py::sequence& variances, const py::object& emas, const py::dict& args,
         const py::dict& scalars, double max_grad_norm) -> py::object {
        return run_job(adafactor_step_job(params, grads, row_vars, col_vars, variances, emas, args, scalars, max_grad_norm));
      },
      py::arg("params"), py::arg("grads"), py::arg("row_vars"), py::arg("col_vars"), py::arg("variances"),
      py::arg("emas"), py::arg("args"), py::arg("scalars"), py::arg("max_grad_norm"),
      "One torch.optim.Adafactor step over the whole list (row_var/col_var for tensors of more than one "
      "dimension, variance for the others; None where a tensor has no such buffer); scalars: rho, eps1, eps2, d. "
      "Returns the global grad norm when max_grad_norm > 0, else None.");
  m.def(
      "adafactor_step_low",
      [](const py::sequence& params, const py::sequence& grads, const py::sequence& row_vars,
         const py::sequence& col_vars, const py::sequence& variances, const py::object& emas, const py::dict& args,
         const py::dict& scalars, double max_grad_norm, const py::object& masters, const py::object& seed,
         uint64_t step) -> py::object {
        return run_job(adafactor_low(params, grads, row_vars, col_vars, variances, emas, args, scalars, max_grad_norm,
                                     masters, seed, step));
      },
      py::arg("params"), py::arg("grads"), py::arg("row_vars"), py::arg("col_vars"), py::arg("variances"),
      py::arg("emas"), py::arg("args"), py::arg("scalars"), py::arg("max_grad_norm"), py::arg("masters"),
      py::arg("seed"), py::arg("step"),
      "adafactor_step on bfloat16/float16 params (grads in their dtype or float32; float32 factors, variances "
      "and averages); masters and seed as optim_step_low.");
  m.def(
      "optim_steps",
      [](const py::sequence& calls) -> py::list {
        std::vector<Job> jobs;
        jobs.reserve(size_t(py::len(calls)));
        for (size_t i = 0; i < size_t(py::len(calls)); ++i) jobs.push_back(job_of(calls[i], i));
        std::vector<double> norms(jobs.size());
        {
          py::gil_scoped_release nogil;
          for (size_t i = 0; i < jobs.size(); ++i) norms[i] = jobs[i].run();
        }
        py::list out;
        for (size_t i = 0; i < jobs.size(); ++i) out.append(norm_or_none(jobs[i], norms[i]));
        return out;
      },
      py::arg("calls"),
      "Several step calls in one: calls is a list of (name, arguments), name one of optim_step, "
      "optim_step_low, adafactor_step, adafactor_step_low and arguments that function's, as a tuple. "
      "Every call is checked first (nothing is stepped if one fails); then they run in order in one "
      "release of the GIL. Returns each call's result.");
  m.def(
      "grad_sums",
      [](const py::sequence& xs) {
        double a = 0, q = 0;
        if (any_low(xs)) {
          const LowList l = gather_low(xs, "grads", false);
          py::gil_scoped_release nogil;
          low_list_sums(l.data.data(), l.dts.data(), l.sizes.data(), l.data.size(), &a, &q);
        } else if (first_is_f64(xs)) {
          const auto g = gather<const double>(xs, "grads");
          const auto l = g.list();
          py::gil_scoped_release nogil;
          list_sums(l, &a, &q);
        } else {
          const auto g = gather<const float>(xs, "grads");
          const auto l = g.list();
          py::gil_scoped_release nogil;
          list_sums(l, &a, &q);
        }
        return py::make_tuple(a, q);
      },
      py::arg("xs"),
      "(sum |x|, sum x^2) over a list of arrays of one dtype (or of float32/bfloat16/float16 arrays), in "
      "double, deterministically.");
  m.def(
      "clip_grad_norm",
      [](const py::sequence& grads, double max_norm) {
        auto run = [&](auto tag) {
          using T = decltype(tag);
          const auto g = gather<T>(grads, "grads");
          const auto l = g.list();
          py::gil_scoped_release nogil;
          double a, q;
          TensorList<const T> cl{l.count, l.data, l.sizes};
          list_sums(cl, &a, &q);
          const double norm = std::sqrt(q);
          const double c = clip_coefficient(norm, max_norm);
          if (!(c >= 1.0)) scale_list(l, c);
          return norm;
        };
        if (any_low(grads)) {
          const LowList l = gather_low(grads, "grads", true);
          py::gil_scoped_release nogil;
          double a, q;
          low_list_sums(l.data.data(), l.dts.data(), l.sizes.data(), l.data.size(), &a, &q);
          const double norm = std::sqrt(q);
          const double c = clip_coefficient(norm, max_norm);
          if (!(c >= 1.0)) low_scale_list(l.data.data(), l.dts.data(), l.sizes.data(), l.data.size(), c, false);
          return norm;
        }
        return first_is_f64(grads) ? run(double{}) : run(float{});
      },
      py::arg("grads"), py::arg("max_norm"));
  m.def(
      "clip_grad_value",
      [](const py::sequence& grads, double clip) {
        auto run = [&](auto tag) {
          using T = decltype(tag);
          const auto g = gather<T>(grads, "grads");
          const auto l = g.list();
          py::gil_scoped_release nogil;
          clamp_list(l, clip);
        };
        if (any_low(grads)) {
          const LowList l = gather_low(grads, "grads", true);
          py::gil_scoped_release nogil;
          low_scale_list(l.data.data(), l.dts.data(), l.sizes.data(), l.data.size(), clip, true);
          return;
        }
        first_is_f64(grads) ? run(double{}) : run(float{});
      },
      py::arg("grads"), py::arg("clip"));
  m.def(
      "add_penalty_grad",
      [](const py::object& g, const py::object& w, double l1, double l2) {
        auto run = [&](auto tag) {
          using T = decltype(tag);
          auto ga = writable_array<T>(g, "g");
          auto wa = readable_array<T>(w, "w");
          if (!same_shape(ga, wa)) throw py::value_error("g has shape " + shape_str(ga) + " but w has shape " + shape_str(wa));
          T* gp = static_cast<T*>(ga.mutable_data());
          const T* wp = static_cast<const T*>(wa.data());
          const size_t n = size_t(ga.size());
          py::gil_scoped_release nogil;
          add_penalty_grad(gp, wp, n, l1, l2);
        };
        const FloatKind gk = float_kind(g);
        if (gk == FloatKind::bf16 || gk == FloatKind::f16) {  // w in g's dtype or float32
          auto [ga, gd] = low_array(g, "g", dtype_code(gk), false, true, nullptr, "");
          auto [wa, wd] = low_array(w, "w", gd, true, false, &ga, "g");
          void* gp = ga.mutable_data();
          const void* wp = wa.data();
          const size_t n = size_t(ga.size());
          py::gil_scoped_release nogil;
          low_penalty_grad(gp, gd, wp, wd, n, l1, l2);
          return;
        }
        has_dtype(g, py::dtype::of<double>()) ? run(double{}) : run(float{});
      },
      py::arg("g"), py::arg("w"), py::arg("l1"), py::arg("l2"));
  m.def(
      "prox_l1",
      [](const py::object& w, double threshold) {
        auto run = [&](auto tag) {
          using T = decltype(tag);
          auto wa = writable_array<T>(w, "w");
          T* wp = static_cast<T*>(wa.mutable_data());
          const size_t n = size_t(wa.size());
          py::gil_scoped_release nogil;
          prox_l1(wp, n, threshold);
        };
        const FloatKind wk = float_kind(w);
        if (wk == FloatKind::bf16 || wk == FloatKind::f16) {
          auto [wa, wd] = low_array(w, "w", dtype_code(wk), false, true, nullptr, "");
          void* wp = wa.mutable_data();
          const size_t n = size_t(wa.size());
          py::gil_scoped_release nogil;
          low_prox_l1(wp, wd, n, threshold);
          return;
        }
        has_dtype(w, py::dtype::of<double>()) ? run(double{}) : run(float{});
      },
      py::arg("w"), py::arg("threshold"));
}

}  // namespace regtune::bind

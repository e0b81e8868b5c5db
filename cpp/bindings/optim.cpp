// regtune._core optimizers and penalties: optim_rules, optim_step, adafactor_step, optim_steps,
// grad_sums, clip_grad_norm, clip_grad_value, add_penalty_grad, prox_l1.
//
// This layer owns the array checks of every step, for every dtype: exact dtype, C-contiguous,
// writable where written, shapes matching, and no written array sharing memory with another
// array of the step (OverlapError, a ValueError naming both). Coefficients are parsed by the
// rules' own field lists (optim_rules()), so no name is repeated here. Pointers and sizes are
// gathered while holding the GIL; the kernels run without it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common.h"
#include "optim/blockwise8.h"
#include "optim/coefficients.h"
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

// regtune._core.OverlapError (a ValueError): two arrays of one call share memory. `names` holds
// the two labels, as the message does ("grads[0] overlaps params[0]; ...").
// (a leaked handle: no Python object may be released at exit, after the interpreter is gone)
py::object& overlap_error() {
  static py::object* type = new py::object();
  return *type;
}

[[noreturn]] void throw_overlap(const std::string& a, const std::string& b, const std::string& why) {
  py::object e = overlap_error()(a + " overlaps " + b + "; " + why);
  e.attr("names") = py::make_tuple(a, b);
  PyErr_SetObject(overlap_error().ptr(), e.ptr());
  throw py::error_already_set();
}

// A checked step, ready to run without the GIL: `run` reads only plain pointers and sizes
// (copies of what the checks gathered); `keep` holds the arrays they point into, released with
// the GIL held when the Job goes. optim_step and adafactor_step build one Job and run it;
// optim_steps builds a Job per call first (nothing runs if any check fails), then runs them
// all, in order, in one release of the GIL.
struct Job {
  std::function<double()> run;
  std::vector<py::object> keep;
  bool wants_norm = false;  // max_grad_norm > 0: the call returns the norm
};

py::object norm_or_none(const Job& job, double norm) {
  return job.wants_norm ? py::object(py::float_(norm)) : py::object(py::none());
}

py::object run_job(Job job) {
  double norm;
  {
    py::gil_scoped_release nogil;
    norm = job.run();
  }
  return norm_or_none(job, norm);
}

// `reduce` of a step: None or a callable (named in the error).
void check_reduce(const py::object& reduce) {
  if (!reduce.is_none() && !PyCallable_Check(reduce.ptr())) {
    throw py::type_error("reduce must be None or a callable, got " + std::string(py::str(py::type::of(reduce).attr("__name__"))));
  }
}

// A copy of `n` of the driver's sums as a float64 array (nothing the callable keeps points into
// the driver's memory), and back after the call; its shape must not change.
template <typename Call>
void call_on_copy(double* sums, std::vector<py::ssize_t> shape, size_t n, Call call) {
  py::array_t<double> a(shape, sums);
  call(a);
  if (std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()) != shape) {
    throw py::value_error("reduce changed the shape of the sums it was given");
  }
  std::memcpy(sums, a.data(), n * sizeof(double));
}

// ------------------------------------------------------------------------------- dtypes
DType dtype_code(FloatKind k) {
  return k == FloatKind::bf16 ? DType::bf16 : k == FloatKind::f16 ? DType::f16 : k == FloatKind::f64 ? DType::f64 : DType::f32;
}
const char* dtype_label(DType d) {
  return d == DType::bf16 ? "bfloat16" : d == DType::f16 ? "float16" : d == DType::f64 ? "float64" : "float32";
}

// An array of a step: an ndarray, C-contiguous, writable when written, of dtype `want` or (when
// `or_f32`) float32, shaped as `like` when given.
py::array step_array(const py::object& obj, const std::string& label, DType want, bool or_f32, bool write,
                     const py::array* like, const std::string& like_label, DType* got = nullptr) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(label + " must be a numpy.ndarray");
  auto a = py::reinterpret_borrow<py::array>(obj);
  const FloatKind k = float_kind(obj);
  const DType d = dtype_code(k);
  if (k == FloatKind::other || (d != want && !(or_f32 && d == DType::f32))) {
    throw py::type_error(label + " must have dtype " + dtype_label(want) +
                         (or_f32 && want != DType::f32 ? " or float32" : "") + ", got " + std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(label + " must be C-contiguous");
  if (write && !a.writeable()) throw py::value_error(label + " must be writable");
  if (like && !same_shape(a, *like)) {
    throw py::value_error(label + " has shape " + shape_str(a) + " but " + like_label + " has shape " + shape_str(*like));
  }
  if (got) *got = d;
  return a;
}

// The arrays of one call, in one order, for the overlap check: every written array, then every
// read one. Bounds are exact for C-contiguous arrays.
struct Spans {
  struct Span {
    const char* lo;
    const char* hi;
    std::string label;
    bool written;
  };
  std::vector<Span> all;
  void add(const py::array& a, std::string label, bool written) {
    const char* p = static_cast<const char*>(a.data());
    if (a.nbytes()) all.push_back({p, p + a.nbytes(), std::move(label), written});
  }
  // The first pair that shares memory with at least one of the two written, named with the
  // later-listed array first (regtune's usual "grads[0] overlaps params[0]"). Sorted sweep.
  void check() const {
    std::vector<size_t> order(all.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const Span &x = all[a], &y = all[b];
      return x.lo != y.lo ? x.lo < y.lo : x.hi != y.hi ? x.hi < y.hi : a < b;
    });
    std::vector<size_t> active;
    for (size_t k : order) {
      const Span& s = all[k];
      active.erase(std::remove_if(active.begin(), active.end(), [&](size_t j) { return all[j].hi <= s.lo; }),
                   active.end());
      for (size_t j : active) {
        const Span& o = all[j];
        if (!(s.written || o.written)) continue;
        const Span& first = k > j ? s : o;
        const Span& second = k > j ? o : s;
        const bool read = !s.written || !o.written;
        throw_overlap(first.label, second.label,
                      read ? "a gradient must not share memory with a parameter or a state buffer"
                           : "parameters and optimizer state must not share memory");
      }
      active.push_back(k);
    }
  }
};

// ------------------------------------------------------------------------- coefficients
// Parses `d` by a field list: every key must name a field; with `required`, num and lerp
// fields must be given. Bools count as 0/1.
Values parse_values(const py::dict& d, const Field* fields, int n, bool required, const char* what) {
  Values v;
  size_t known = 0;
  for (int i = 0; i < n; ++i) {
    const char* name = fields[i].name;
    if (d.contains(name)) {
      py::object x = d[name];
      if (!py::isinstance<py::float_>(x) && !py::isinstance<py::int_>(x) && !py::isinstance<py::bool_>(x)) {
        throw py::type_error(std::string(what) + "['" + name + "'] must be a number, got " +
                             std::string(py::str(py::type::of(x).attr("__name__"))));
      }
      v.v[i] = x.cast<double>();
      v.given[i] = true;
      ++known;
    } else if (required && (fields[i].kind == FieldKind::num || fields[i].kind == FieldKind::lerp)) {
      throw py::value_error(std::string(what) + " lacks '" + name + "'");
    }
  }
  if (known != size_t(py::len(d))) {
    for (auto kv : d) {
      const std::string key = py::str(kv.first);
      bool found = false;
      for (int i = 0; i < n; ++i) found = found || key == fields[i].name;
      if (!found) throw py::value_error(std::string(what) + ": unknown coefficient '" + key + "'");
    }
  }
  return v;
}

Values parse_fused(const py::dict& d) {
  int n;
  const Field* f = fused_fields(&n);
  return parse_values(d, f, n, false, "fused");
}

int rule_id(const py::object& rule) {
  int n;
  optim_rules(&n);
  if (py::isinstance<py::str>(rule)) {
    const int id = optim_rule_id(rule.cast<std::string>().c_str());
    if (id < 0) throw py::value_error("unknown optimizer rule '" + rule.cast<std::string>() + "'");
    return id;
  }
  const int id = rule.cast<int>();
  if (id < 0 || id >= n) throw py::value_error("unknown optimizer rule " + std::to_string(id));
  return id;
}

// --------------------------------------------------------------------------- the tensors
// The tensors of a step, checked: params (one dtype; for the weight average's update, float32
// or float64 averages following values of any float dtype), grads (the params' dtype, or
// float32 for 16-bit params), `masters` (float32 masters of 16-bit params: the step's params,
// the params receiving their rounding), the state lists (one dtype: the params', or float32
// for 16-bit params) named `state_names`, and the averages (float32 for 16-bit params).
struct Gathered {
  std::vector<Tensor> tensors;
  std::vector<py::object> keep;
  std::vector<py::array> params;  // for shapes and ndim
  Spans spans;
  std::vector<Spans::Span> reads;
  bool low = false;
  DType pdt = DType::f32;
};

DType params_dtype(const py::sequence& params, bool average, const py::sequence& grads) {
  if (py::len(params) == 0) return DType::f32;
  const FloatKind k0 = float_kind(average && py::len(grads) ? py::object(grads[0]) : py::object(params[0]));
  if (k0 == FloatKind::other) {
    const char* label = average ? "grads[0]" : "params[0]";
    if (!py::isinstance<py::array>(average ? py::object(grads[0]) : py::object(params[0]))) {
      throw py::type_error(std::string(label) + " must be a numpy.ndarray");
    }
    throw py::type_error(std::string(label) + " must have dtype float32, float64, bfloat16 or float16");
  }
  return dtype_code(k0);
}

// The param, master and grad of tensor i into t; `extra` lists the buffers of this tensor's
// shape (states, averages) to check and record after them.
Gathered gather_step(const py::sequence& params, const py::sequence& grads, const py::object& masters, bool average) {
  Gathered out;
  const size_t n = size_t(py::len(params));
  if (size_t(py::len(grads)) != n) {
    throw py::value_error("grads has " + std::to_string(py::len(grads)) + " arrays but params has " + std::to_string(n));
  }
  if (!masters.is_none() && size_t(py::len(masters)) != n) {
    throw py::value_error("masters has " + std::to_string(py::len(masters)) + " arrays but params has " +
                          std::to_string(n));
  }
  const DType pdt = params_dtype(params, average, grads);
  out.pdt = pdt;
  out.low = is_16bit(pdt);
  if (!masters.is_none() && !out.low) throw py::type_error("masters go with bfloat16 or float16 params");
  out.tensors.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string pl = item("params", i);
    Tensor& t = out.tensors[i];
    // The weight average's update: the averages (params) are float32 for 16-bit values (grads).
    const DType want = average && out.low ? DType::f32 : pdt;
    DType pd;
    py::array p = step_array(params[i], pl, want, false, true, nullptr, "", &pd);
    t.size = size_t(p.size());
    out.spans.add(p, pl, true);
    if (!masters.is_none()) {
      py::array m = step_array(masters.cast<py::sequence>()[i], item("state['master']", i), DType::f32, false, true, &p, pl);
      t.param = {m.mutable_data(), DType::f32};
      t.shadow = {p.mutable_data(), pdt};
      out.keep.push_back(m);
    } else {
      t.param = {p.mutable_data(), pd};
    }
    DType gd;
    py::array g = step_array(grads[i], item("grads", i), pdt, out.low, false, &p, pl, &gd);
    t.grad = {const_cast<void*>(g.data()), gd};
    out.reads.push_back({static_cast<const char*>(g.data()), static_cast<const char*>(g.data()) + g.nbytes(),
                         item("grads", i), false});
    out.keep.push_back(g);
    out.keep.push_back(p);
    out.params.push_back(p);
  }
  if (!masters.is_none()) {
    for (size_t i = 0; i < n; ++i) {
      py::array m = py::reinterpret_borrow<py::array>(masters.cast<py::sequence>()[i]);
      out.spans.add(m, item("state['master']", i), true);
    }
  }
  return out;
}

// Stochastic rounding: word i of stream step * 2**24 + t rounds element i of tensor t.
void set_rounding(Gathered& g, const py::object& seed, uint64_t step) {
  if (seed.is_none()) return;
  if (!g.low) throw py::type_error("seed= (stochastic rounding) goes with bfloat16 or float16 params");
  const size_t n = g.tensors.size();
  if (n >= (size_t(1) << 24) || step >= (uint64_t(1) << 40)) {
    throw py::value_error("stochastic rounding takes at most 2**24 tensors and 2**40 steps");
  }
  const uint64_t key = seed.cast<uint64_t>();
  for (size_t i = 0; i < n; ++i) {
    if (g.tensors[i].shadow) continue;
    g.tensors[i].stochastic = true;
    g.tensors[i].sr = {key, (step << 24) | uint64_t(i)};
  }
}

void finish_checks(Gathered& g) {
  for (auto& r : g.reads) g.spans.all.push_back(std::move(r));
  g.reads.clear();
  g.spans.check();
}

// A blockwise 8-bit state (codes, absmax) of tensor i: uint8 codes shaped as the parameter and
// float32 absmax, one per block of kQ8Block elements; both C-contiguous and writable.
Array blockwise8_state(const py::handle& entry, const std::string& label, DType q8, const RuleInfo& info,
                       Gathered& g, size_t i) {
  if (!info.blockwise8) throw py::type_error(label + ": the " + std::string(info.name) + " rule keeps no 8-bit state");
  if (!q8_tables().valid) throw std::runtime_error("regtune's 8-bit lookup tables failed their check (a bug)");
  if (g.pdt == DType::f64) throw py::type_error(label + ": 8-bit state goes with float32, bfloat16 or float16 params");
  auto pair = py::reinterpret_borrow<py::tuple>(entry);
  if (py::len(pair) != 2) throw py::value_error(label + " must be a pair (codes, absmax)");
  const py::array& p = g.params[i];
  const std::string cl = label + "[0]", al = label + "[1]";
  if (!py::isinstance<py::array>(pair[0]) || !py::isinstance<py::array>(pair[1])) {
    throw py::type_error(label + " must be a pair of numpy.ndarrays (codes, absmax)");
  }
  auto codes = py::reinterpret_borrow<py::array>(pair[0]);
  auto absmax = py::reinterpret_borrow<py::array>(pair[1]);
  if (!codes.dtype().is(py::dtype::of<uint8_t>())) {
    throw py::type_error(cl + " (codes) must have dtype uint8, got " + std::string(py::str(codes.dtype())));
  }
  if (!absmax.dtype().is(py::dtype::of<float>())) {
    throw py::type_error(al + " (absmax) must have dtype float32, got " + std::string(py::str(absmax.dtype())));
  }
  for (const auto* a : {&codes, &absmax}) {
    const std::string& l = a == &codes ? cl : al;
    if (!(a->flags() & py::array::c_style)) throw py::value_error(l + " must be C-contiguous");
    if (!a->writeable()) throw py::value_error(l + " must be writable");
  }
  if (!same_shape(codes, p)) {
    throw py::value_error(cl + " has shape " + shape_str(codes) + " but " + item("params", i) + " has shape " + shape_str(p));
  }
  const size_t blocks = (size_t(p.size()) + kQ8Block - 1) / kQ8Block;
  if (absmax.ndim() != 1 || size_t(absmax.size()) != blocks) {
    throw py::value_error(al + " must have shape (" + std::to_string(blocks) + ",) (one per block of " +
                          std::to_string(kQ8Block) + "), got " + shape_str(absmax));
  }
  g.spans.add(codes, cl, true);
  g.spans.add(absmax, al, true);
  g.keep.push_back(codes);
  g.keep.push_back(absmax);
  Array out{codes.mutable_data(), q8};
  out.absmax = static_cast<float*>(absmax.mutable_data());
  return out;
}

Job step_job(const py::object& rule_obj, const py::sequence& params, const py::sequence& grads,
             const py::sequence& states, const py::sequence& state_names, const py::dict& coef_d,
             const py::dict& fused_d, double max_grad_norm, const py::object& masters, const py::object& seed,
             uint64_t step, const py::object& reduce) {
  const int rule = rule_id(rule_obj);
  int nrules;
  const RuleInfo& info = optim_rules(&nrules)[rule];
  const bool average = std::string(info.name) == "average";
  if (py::len(states) != 4 || py::len(state_names) != 4) throw py::value_error("optim_step: states must list 4 slots");
  const Values coef = parse_values(coef_d, info.fields, info.nfields, true, "coef");
  const Values fused = parse_fused(fused_d);
  if (!average && fused.given[Fused::ema_weight_index] != !py::object(states[3]).is_none()) {
    throw py::value_error("optim_step: the averages (states[3]) go with fused['ema_weight']");
  }
  Gathered g = gather_step(params, grads, masters, average);
  const size_t n = g.tensors.size();
  // The state's dtype: that of the first state array given (the params', or float32 for 16-bit params).
  DType state_dt = g.low ? DType::f32 : g.pdt;
  for (size_t k = 0; k < 3 && g.low; ++k) {
    py::object lst = states[k];
    if (lst.is_none() || py::len(lst) == 0) continue;
    const FloatKind sk = float_kind(lst.cast<py::sequence>()[0]);
    if (sk == FloatKind::bf16 || sk == FloatKind::f16) state_dt = g.pdt;
    break;
  }
  for (size_t k = 0; k < 4; ++k) {
    py::object lst = states[k];
    if (lst.is_none()) continue;
    const std::string name = py::str(state_names[k]).cast<std::string>();
    auto seq = lst.cast<py::sequence>();
    if (size_t(py::len(seq)) != n) {
      throw py::value_error(name + " has " + std::to_string(py::len(seq)) + " arrays but params has " + std::to_string(n));
    }
    const DType want = k == 3 ? (g.low ? DType::f32 : g.pdt) : state_dt;
    for (size_t i = 0; i < n; ++i) {
      if (k < 3 && py::isinstance<py::tuple>(seq[i])) {  // blockwise 8-bit: (codes, absmax)
        const DType q8 = (info.nonnegative >> k) & 1u ? DType::q8u : DType::q8s;
        g.tensors[i].state[k] = blockwise8_state(seq[i], item(name, i), q8, info, g, i);
        continue;
      }
      DType sd;
      py::array a = step_array(seq[i], item(name, i), want, false, true, &g.params[i], item("params", i), &sd);
      (k < 3 ? g.tensors[i].state[k] : g.tensors[i].ema) = {a.mutable_data(), sd};
      g.spans.add(a, item(name, i), true);
      g.keep.push_back(a);
    }
  }
  for (size_t i = 0; i < n; ++i) {  // a tensor's states are all 8-bit or none
    const Tensor& t = g.tensors[i];
    for (int k = 1; k < 3; ++k) {
      if (t.state[k] && t.state[0] && is_q8(t.state[k].dt) != is_q8(t.state[0].dt)) {
        throw py::type_error(py::str(state_names[k]).cast<std::string>() + "[" + std::to_string(i) + "] and " +
                             py::str(state_names[0]).cast<std::string>() + "[" + std::to_string(i) +
                             "] must both be blockwise 8-bit or both not");
      }
    }
  }
  set_rounding(g, seed, step);
  if (info.per_tensor) {
    for (size_t i = 0; i < n; ++i) g.tensors[i].adapt = g.params[i].ndim() > 1;
  }
  check_reduce(reduce);
  finish_checks(g);
  Job job;
  job.wants_norm = max_grad_norm > 0;
  job.keep = std::move(g.keep);
  SumsReduce hook;
  if (!reduce.is_none() && info.per_tensor) {
    job.keep.push_back(reduce);  // alive while the job is; the hook borrows it
    hook = [fn = reduce.ptr()](double* sums, size_t count) {
      py::gil_scoped_acquire gil;
      call_on_copy(sums, {py::ssize_t(count), 2}, 2 * count, [&](py::array_t<double>& a) { py::handle f(fn); f(a); });
    };
  }
  job.run = [rule, tensors = std::move(g.tensors), coef, fused, max_grad_norm, hook = std::move(hook)]() {
    return optim_step(rule, tensors.data(), tensors.size(), coef, fused, max_grad_norm, hook);
  };
  return job;
}

std::string shape_of(const std::vector<py::ssize_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += std::to_string(s[i]) + (s.size() == 1 ? "," : i + 1 < s.size() ? ", " : "");
  return out + ")";
}

// torch.optim.Adafactor's step: a tensor of more than one dimension keeps row_var (its shape
// with the last axis 1) and col_var (the second-last axis 1), any other keeps variance (its
// shape); each list holds None where the tensor has no such buffer. The buffers and averages
// are of the compute type (float64 for float64 params, else float32).
Job adafactor_job(const py::sequence& params, const py::sequence& grads, const py::sequence& row_vars,
                  const py::sequence& col_vars, const py::sequence& variances, const py::object& emas,
                  const py::dict& coef_d, const py::dict& fused_d, double max_grad_norm, const py::object& masters,
                  const py::object& seed, uint64_t step, const py::object& reduce) {
  int nf;
  const Field* af = adafactor_fields(&nf);
  const Values coef = parse_values(coef_d, af, nf, true, "coef");
  const Values fused = parse_fused(fused_d);
  if (fused_d.contains("ema_weight") == emas.is_none()) {
    throw py::value_error("adafactor_step: the averages go with fused['ema_weight']");
  }
  Gathered g = gather_step(params, grads, masters, false);
  const size_t n = g.tensors.size();
  const DType fdt = g.pdt == DType::f64 ? DType::f64 : DType::f32;
  std::vector<void*> rv(n, nullptr), cv(n, nullptr), var(n, nullptr);
  std::vector<size_t> batches(n), rows(n), cols(n);
  std::vector<unsigned char> factored(n);
  auto take = [&](const py::sequence& seq, const char* name, size_t i, const std::vector<py::ssize_t>& shape) -> void* {
    if (size_t(py::len(seq)) != n) {
      throw py::value_error(std::string(name) + " has " + std::to_string(py::len(seq)) + " arrays but params has " +
                            std::to_string(n));
    }
    const std::string label = item(name, i);
    py::array a = step_array(seq[i], label, fdt, false, true, nullptr, "");
    std::vector<py::ssize_t> got(a.shape(), a.shape() + a.ndim());
    if (got != shape) throw py::value_error(label + " has shape " + shape_str(a) + " but must have shape " + shape_of(shape));
    g.spans.add(a, label, true);
    g.keep.push_back(a);
    return a.mutable_data();
  };
  for (size_t i = 0; i < n; ++i) {
    const py::array& p = g.params[i];
    const std::vector<py::ssize_t> shape(p.shape(), p.shape() + p.ndim());
    factored[i] = shape.size() > 1;
    if (factored[i]) {
      const size_t d = shape.size();
      rows[i] = size_t(shape[d - 2]), cols[i] = size_t(shape[d - 1]);
      batches[i] = 1;
      for (size_t k = 0; k + 2 < d; ++k) batches[i] *= size_t(shape[k]);
      auto rshape = shape, cshape = shape;
      rshape[d - 1] = 1, cshape[d - 2] = 1;
      rv[i] = take(row_vars, "state['row_var']", i, rshape);
      cv[i] = take(col_vars, "state['col_var']", i, cshape);
    } else {
      batches[i] = 1, rows[i] = 1, cols[i] = g.tensors[i].size;
      var[i] = take(variances, "state['variance']", i, shape);
    }
    if (!emas.is_none()) g.tensors[i].ema = {take(emas.cast<py::sequence>(), "ema.averages", i, shape), fdt};
  }
  set_rounding(g, seed, step);
  check_reduce(reduce);
  finish_checks(g);
  Job job;
  job.wants_norm = max_grad_norm > 0;
  job.keep = std::move(g.keep);
  AdafactorReduce hook;
  if (!reduce.is_none()) {
    job.keep.push_back(reduce);  // alive while the job is; the hook borrows it
    hook = [fn = reduce.ptr()](int stage, double* sums, const size_t* offsets, size_t count) {
      py::gil_scoped_acquire gil;
      py::array_t<int64_t> off(py::ssize_t(count + 1));
      for (size_t t = 0; t <= count; ++t) off.mutable_data()[t] = int64_t(offsets[t]);
      call_on_copy(sums, {py::ssize_t(offsets[count])}, offsets[count],
                   [&](py::array_t<double>& a) { py::handle f(fn); f(stage, a, off); });
    };
  }
  job.run = [tensors = std::move(g.tensors), rv = std::move(rv), cv = std::move(cv), var = std::move(var),
             batches = std::move(batches), rows = std::move(rows), cols = std::move(cols),
             factored = std::move(factored), coef, fused, max_grad_norm, hook = std::move(hook)]() {
    return adafactor_step(tensors.data(), tensors.size(), rv.data(), cv.data(), var.data(), batches.data(),
                          rows.data(), cols.data(), factored.data(), coef, fused, max_grad_norm, hook);
  };
  return job;
}

// One call of optim_steps: (name, arguments) with name optim_step or adafactor_step and the
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
    want(12);
    return step_job(a[0], seq(1), seq(2), seq(3), seq(4), a[5].cast<py::dict>(), a[6].cast<py::dict>(),
                    a[7].cast<double>(), a[8], a[9], a[10].cast<uint64_t>(), a[11]);
  }
  if (name == "adafactor_step") {
    want(13);
    return adafactor_job(seq(0), seq(1), seq(2), seq(3), seq(4), a[5], a[6].cast<py::dict>(), a[7].cast<py::dict>(),
                         a[8].cast<double>(), a[9], a[10], a[11].cast<uint64_t>(), a[12]);
  }
  throw py::value_error(label + ": unknown step function '" + name + "'");
}

// A list of arrays of any float dtype (each C-contiguous; writable when `write`): float32 and
// 16-bit arrays may mix (16-bit gradients with float32 ones); float64 ones are all float64.
struct ArrayList {
  std::vector<py::array> arrays;
  std::vector<Array> data;
  std::vector<size_t> sizes;
};
ArrayList gather_list(const py::sequence& seq, const std::string& name, bool write) {
  ArrayList l;
  const size_t n = size_t(py::len(seq));
  const bool f64 = n > 0 && float_kind(seq[0]) == FloatKind::f64;
  for (size_t i = 0; i < n; ++i) {
    const std::string label = item(name, i);
    const FloatKind k = float_kind(seq[i]);
    const DType want = f64 ? DType::f64 : (k == FloatKind::bf16 || k == FloatKind::f16) ? dtype_code(k) : DType::f32;
    DType d;
    py::array a = step_array(seq[i], label, want, !f64, write, nullptr, "", &d);
    l.data.push_back({write ? a.mutable_data() : const_cast<void*>(a.data()), d});
    l.sizes.push_back(size_t(a.size()));
    l.arrays.push_back(a);
  }
  return l;
}

// One array of an element-wise penalty op: a float dtype, C-contiguous.
py::array penalty_array(const py::object& obj, const char* label, bool write, DType* d) {
  const FloatKind k = float_kind(obj);
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(label) + " must be a numpy.ndarray");
  return step_array(obj, label, k == FloatKind::other ? DType::f32 : dtype_code(k), false, write, nullptr, "", d);
}

py::list fields_list(const Field* f, int n) {
  static const char* kinds[] = {"num", "flag", "opt", "lerp"};
  py::list out;
  for (int i = 0; i < n; ++i) out.append(py::make_tuple(f[i].name, kinds[int(f[i].kind)]));
  return out;
}

}  // namespace

void register_optim(py::module_& m) {
  // Leaked on purpose, as overlap_error()'s handle: nothing may be released after the interpreter.
  auto* overlap = new py::exception<std::runtime_error>(m, "OverlapError", PyExc_ValueError);
  overlap_error() = py::reinterpret_borrow<py::object>(*overlap);
  m.attr("OverlapError").attr("__doc__") =
      "Two arrays of one call share memory (a ValueError); .names holds their two labels.";
  m.attr("REDUCE_BLOCK") = kReduceBlock;
  m.def(
      "optim_rules",
      []() {
        int n;
        const RuleInfo* r = optim_rules(&n);
        py::list out;
        for (int i = 0; i < n; ++i) {
          py::dict d;
          d["name"] = r[i].name;
          d["id"] = i;
          d["fields"] = fields_list(r[i].fields, r[i].nfields);
          d["nstates"] = r[i].nstates;
          d["per_tensor"] = r[i].per_tensor;
          py::list nonneg;
          for (int k = 0; k < r[i].nstates; ++k) nonneg.append(bool((r[i].nonnegative >> k) & 1u));
          d["nonnegative"] = py::tuple(nonneg);
          d["blockwise8"] = r[i].blockwise8;
          out.append(d);
        }
        return out;
      },
      "The optimizer rules of cpp/src/optim/rules.def, in its order: dicts of name, id, fields (the "
      "coefficients' (name, kind) pairs, kind num, flag, opt or lerp), nstates, per_tensor, nonnegative "
      "(per state: never negative, the unsigned 8-bit map) and blockwise8 (whether its states may be 8-bit).");
  m.attr("Q8_BLOCK") = kQ8Block;
  m.def(
      "dynamic_map",
      [](bool is_signed) {
        py::array_t<float> out(256);
        std::memcpy(out.mutable_data(), dynamic_map(is_signed), 256 * sizeof(float));
        return out;
      },
      py::arg("signed") = true, "bitsandbytes' dynamic map (signed or unsigned): the 256 values of the 8-bit codes.");
  m.def(
      "quantize_blockwise",
      [](const py::object& xo, bool is_signed) {
        py::array x = step_array(xo, "x", DType::f32, false, false, nullptr, "");
        if (!q8_tables().valid) throw std::runtime_error("regtune's 8-bit lookup tables failed their check (a bug)");
        const size_t n = size_t(x.size());
        py::array_t<uint8_t> codes(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        py::array_t<float> absmax(py::ssize_t((n + kQ8Block - 1) / kQ8Block));
        const float* xp = static_cast<const float*>(x.data());
        uint8_t* cp = codes.mutable_data();
        float* ap = absmax.mutable_data();
        {
          py::gil_scoped_release nogil;
          quantize_blockwise(xp, n, cp, ap, is_signed);
        }
        return py::make_tuple(codes, absmax);
      },
      py::arg("x"), py::arg("signed") = true,
      "Blockwise 8-bit codes of x (float32, C-contiguous) and the absmax of each block of Q8_BLOCK elements.");
  m.def(
      "dequantize_blockwise",
      [](const py::object& co, const py::object& ao, bool is_signed) {
        if (!py::isinstance<py::array>(co)) throw py::type_error("codes must be a numpy.ndarray");
        if (!py::isinstance<py::array>(ao)) throw py::type_error("absmax must be a numpy.ndarray");
        auto codes = py::reinterpret_borrow<py::array>(co);
        auto absmax = py::reinterpret_borrow<py::array>(ao);
        if (!codes.dtype().is(py::dtype::of<uint8_t>())) {
          throw py::type_error("codes must have dtype uint8, got " + std::string(py::str(codes.dtype())));
        }
        if (!absmax.dtype().is(py::dtype::of<float>())) {
          throw py::type_error("absmax must have dtype float32, got " + std::string(py::str(absmax.dtype())));
        }
        if (!(codes.flags() & py::array::c_style)) throw py::value_error("codes must be C-contiguous");
        if (!(absmax.flags() & py::array::c_style)) throw py::value_error("absmax must be C-contiguous");
        const size_t n = size_t(codes.size()), blocks = (n + kQ8Block - 1) / kQ8Block;
        if (absmax.ndim() != 1 || size_t(absmax.size()) != blocks) {
          throw py::value_error("absmax must have shape (" + std::to_string(blocks) + ",) for codes of " +
                                std::to_string(n) + " elements, got " + shape_str(absmax));
        }
        py::array_t<float> out(std::vector<py::ssize_t>(codes.shape(), codes.shape() + codes.ndim()));
        const uint8_t* cp = static_cast<const uint8_t*>(codes.data());
        const float* ap = static_cast<const float*>(absmax.data());
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          dequantize_blockwise(cp, ap, n, op, is_signed);
        }
        return out;
      },
      py::arg("codes"), py::arg("absmax"), py::arg("signed") = true,
      "float32 values of blockwise 8-bit codes: dynamic_map(signed)[codes] * absmax of their block.");
  m.def(
      "fused_fields", []() { int n; const Field* f = fused_fields(&n); return fields_list(f, n); },
      "The fields every rule can fuse (clip, l1, decay, wd, prox, ema_weight, ema_count, ema_copy).");
  m.def(
      "adafactor_fields", []() { int n; const Field* f = adafactor_fields(&n); return fields_list(f, n); },
      "Adafactor's coefficient fields.");
  m.def(
      "optim_step",
      [](const py::object& rule, const py::sequence& params, const py::sequence& grads, const py::sequence& states,
         const py::sequence& state_names, const py::dict& coef, const py::dict& fused, double max_grad_norm,
         const py::object& masters, const py::object& seed, uint64_t step, const py::object& reduce) -> py::object {
        return run_job(step_job(rule, params, grads, states, state_names, coef, fused, max_grad_norm, masters, seed,
                                step, reduce));
      },
      py::arg("rule"), py::arg("params"), py::arg("grads"), py::arg("states"), py::arg("state_names"),
      py::arg("coef"), py::arg("fused"), py::arg("max_grad_norm") = 0.0, py::arg("masters") = py::none(),
      py::arg("seed") = py::none(), py::arg("step") = 0, py::arg("reduce") = py::none(),
      "One step of optimizer rule `rule` (a name or id of optim_rules()) over the whole list, in one pass, "
      "for float32, float64, bfloat16 or float16 params (one dtype; grads in it or, for 16-bit params, "
      "float32; the state in it or float32). states: 3 state lists and the averages (None each where "
      "absent), named by state_names; coef: the rule's fields; fused: fused_fields(). masters: float32 "
      "master copies of 16-bit params (the step's params; params receive their rounding to nearest); seed: "
      "None (round to nearest) or the key of stochastic rounding, word i of stream step * 2**24 + t rounding "
      "element i of tensor t. reduce: None, or for a rule with a trust ratio (per_tensor) a callable given, "
      "between its two passes, a float64 (len(params), 2) array of each tensor's two sums of squares to make "
      "whole in place (shards of one tensor on several processes: an all-reduce); other rules never call it. "
      "Returns the global grad norm when max_grad_norm > 0, else None.");
  m.def(
      "adafactor_step",
      [](const py::sequence& params, const py::sequence& grads, const py::sequence& row_vars,
         const py::sequence& col_vars, const py::sequence& variances, const py::object& emas, const py::dict& coef,
         const py::dict& fused, double max_grad_norm, const py::object& masters, const py::object& seed,
         uint64_t step, const py::object& reduce) -> py::object {
        return run_job(adafactor_job(params, grads, row_vars, col_vars, variances, emas, coef, fused, max_grad_norm,
                                     masters, seed, step, reduce));
      },
      py::arg("params"), py::arg("grads"), py::arg("row_vars"), py::arg("col_vars"), py::arg("variances"),
      py::arg("emas"), py::arg("coef"), py::arg("fused"), py::arg("max_grad_norm") = 0.0,
      py::arg("masters") = py::none(), py::arg("seed") = py::none(), py::arg("step") = 0,
      py::arg("reduce") = py::none(),
      "One torch.optim.Adafactor step over the whole list (row_var/col_var for tensors of more than one "
      "dimension, variance for the others; None where a tensor has no such buffer; float64 for float64 "
      "params, else float32); coef: adafactor_fields(). reduce: None or a callable reduce(stage, sums, offsets) "
      "called between the passes with the sums the step divides and their counts (float64; tensor t's are "
      "sums[offsets[t]:offsets[t + 1]], laid out per stage as regtune/optim.h says), to change in place: "
      "a sharded tensor's all-reduce. Returns the global grad norm when max_grad_norm > 0.");
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
      "Several step calls in one: calls is a list of (name, arguments), name optim_step or adafactor_step "
      "and arguments that function's, as a tuple. Every call is checked first (nothing is stepped if one "
      "fails); then they run in order in one release of the GIL. Returns each call's result.");
  m.def("clip_coefficient", &clip_coefficient, py::arg("total_norm"), py::arg("max_norm"),
        "min(max_norm / (total_norm + 1e-6), 1) as torch.nn.utils.clip_grad_norm_; NaN when the norm is.");
  m.def(
      "grad_sums",
      [](const py::sequence& xs) {
        const ArrayList l = gather_list(xs, "grads", false);
        double a = 0, q = 0;
        py::gil_scoped_release nogil;
        list_sums(l.data.data(), l.sizes.data(), l.data.size(), &a, &q);
        return std::make_pair(a, q);
      },
      py::arg("xs"),
      "(sum |x|, sum x^2) over a list of float64 arrays or of float32/bfloat16/float16 arrays, in double, "
      "deterministically.");
  m.def(
      "clip_grad_norm",
      [](const py::sequence& grads, double max_norm) {
        const ArrayList l = gather_list(grads, "grads", true);
        py::gil_scoped_release nogil;
        double a, q;
        list_sums(l.data.data(), l.sizes.data(), l.data.size(), &a, &q);
        const double norm = std::sqrt(q);
        const double c = clip_coefficient(norm, max_norm);
        if (!(c >= 1.0)) scale_list(l.data.data(), l.sizes.data(), l.data.size(), c, false);
        return norm;
      },
      py::arg("grads"), py::arg("max_norm"));
  m.def(
      "clip_grad_value",
      [](const py::sequence& grads, double clip) {
        const ArrayList l = gather_list(grads, "grads", true);
        py::gil_scoped_release nogil;
        scale_list(l.data.data(), l.sizes.data(), l.data.size(), clip, true);
      },
      py::arg("grads"), py::arg("clip"));
  m.def(
      "add_penalty_grad",
      [](const py::object& g, const py::object& w, double l1, double l2) {
        DType gd, wd;
        py::array ga = penalty_array(g, "g", true, &gd);
        // w: g's dtype, or float32 for a 16-bit g
        py::array wa = step_array(w, "w", gd, is_16bit(gd), false, &ga, "g", &wd);
        const Array gp{ga.mutable_data(), gd}, wp{const_cast<void*>(wa.data()), wd};
        const size_t n = size_t(ga.size());
        py::gil_scoped_release nogil;
        add_penalty_grad(gp, wp, n, l1, l2);
      },
      py::arg("g"), py::arg("w"), py::arg("l1"), py::arg("l2"));
  m.def(
      "prox_l1",
      [](const py::object& w, double threshold) {
        DType wd;
        py::array wa = penalty_array(w, "w", true, &wd);
        const Array wp{wa.mutable_data(), wd};
        const size_t n = size_t(wa.size());
        py::gil_scoped_release nogil;
        prox_l1(wp, n, threshold);
      },
      py::arg("w"), py::arg("threshold"));
}

}  // namespace regtune::bind

// regtune._core augmentation: augment_run (one pipeline over a batch), augment_mix (MixUp and
// CutMix) and augment_words (the per-sample Philox words the Python layer turns into random
// choices). regtune.augment builds the per-axis maps and per-sample parameters; the checks here
// make sure no call can read or write outside its arrays.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "augment/step.h"
#include "common.h"
#include "regtune/augment.h"

namespace regtune::bind {

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <typename T>
const T* table(const py::object& obj, const char* name, size_t rows, size_t cols) {
  auto a = readable_array<T>(obj, name);
  if (a.ndim() != 2 || size_t(a.shape(0)) != rows || size_t(a.shape(1)) != cols) {
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(rows) + ", " +
                          std::to_string(cols) + "), got " + shape_str(a));
  }
  return static_cast<const T*>(a.data());
}

const int32_t* index_table(const py::object& obj, const char* name, size_t rows, size_t cols, size_t limit) {
  const int32_t* p = table<int32_t>(obj, name, rows, cols);
  for (size_t i = 0; i < rows * cols; ++i) {
    if (p[i] < -1 || p[i] >= int64_t(limit)) {
      throw py::value_error(std::string(name) + " holds " + std::to_string(p[i]) + ", outside [-1, " +
                            std::to_string(limit) + ")");
    }
  }
  return p;
}

const float* vector_of(const py::object& obj, const char* name, size_t n) {
  auto a = readable_array<float>(obj, name);
  if (a.ndim() != 1 || size_t(a.shape(0)) != n) {
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(n) + ",), got " + shape_str(a));
  }
  return static_cast<const float*>(a.data());
}

const uint64_t* sample_indices(const py::object& obj, size_t n) {
  auto a = readable_array<uint64_t>(obj, "indices");
  if (a.ndim() != 1 || size_t(a.shape(0)) != n) {
    throw py::value_error("indices must have shape (" + std::to_string(n) + ",), got " + shape_str(a));
  }
  const uint64_t* p = static_cast<const uint64_t*>(a.data());
  for (size_t i = 0; i < n; ++i) {
    if (p[i] >> 32) throw py::value_error("indices must be < 2**32, got " + std::to_string(p[i]));
  }
  return p;
}

void check_epoch(uint64_t epoch) {
  if (epoch >> 32) throw py::value_error("epoch must be < 2**32, got " + std::to_string(epoch));
}

}  // namespace

// A step's fields from a Python dict (regtune.augment's ops build them): every key must be read
// by the step (a misspelt one is refused), every array is checked before its pointer is taken,
// and the arrays are kept alive in `keep`.
class DictRecord : public StepRecord {
 public:
  DictRecord(std::string name, py::dict d, const AugmentBatch& b, std::vector<py::object>& keep)
      : name_(std::move(name)), d_(std::move(d)), keep_(keep) {
    batch = &b;
  }
  int32_t position() override {
    const int32_t p = get("op_position").cast<int32_t>();
    if (p < 0 || p >= (1 << 30)) throw py::value_error("op_position must be in [0, 2**30)");
    return p;
  }
  float number(const char* key) override { return get(key).cast<float>(); }
  bool flag(const char* key) override { return get(key).cast<bool>(); }
  bool has(const char* key) override {
    used_.push_back(key);
    return d_.contains(key) && !py::object(d_[key]).is_none();
  }
  const float* rows(const char* key, size_t cols) override {
    py::object a = get(key);
    keep_.push_back(a);
    return table<float>(a, key, batch->n, cols);
  }
  const float* vector(const char* key, size_t n) override {
    py::object a = get(key);
    keep_.push_back(a);
    return vector_of(a, key, n);
  }
  [[noreturn]] void fail(const std::string& message) override { throw py::value_error(message); }
  // After the step is built: no key it did not read.
  void check_all_read() const {
    for (auto kv : d_) {
      const std::string key = py::str(kv.first);
      if (std::find(used_.begin(), used_.end(), key) == used_.end()) {
        throw py::value_error("step '" + name_ + "' has no field '" + key + "'");
      }
    }
  }

 private:
  py::object get(const char* key) {
    used_.push_back(key);
    if (!d_.contains(key)) throw py::value_error("step '" + name_ + "' needs '" + key + "'");
    return d_[key];
  }
  std::string name_;
  py::dict d_;
  std::vector<py::object>& keep_;
  std::vector<std::string> used_;
};

void register_augment(py::module_& m) {
  m.def(
      "augment_words",
      [](uint64_t key, uint64_t epoch, const py::object& indices, uint32_t op_position, size_t nwords) {
        check_epoch(epoch);
        if (nwords == 0 || nwords > 4096) throw py::value_error("nwords must be in [1, 4096]");
        if (op_position >= (1u << 30)) throw py::value_error("op_position must be < 2**30");
        const size_t n = size_t(py::len(indices));
        const uint64_t* idx = sample_indices(indices, n);
        py::array_t<uint32_t> out({n, nwords});
        uint32_t* o = out.mutable_data();
        const size_t nblocks = (nwords + 3) / 4;
        {
          py::gil_scoped_release nogil;
          std::vector<uint32_t> buf(4 * nblocks);
          const auto blocks = random_kernels().blocks;
          for (size_t i = 0; i < n; ++i) {
            blocks(Stream{key, (epoch << 32) | idx[i]}, uint64_t(op_position) << 32, nblocks, buf.data());
            std::memcpy(o + i * nwords, buf.data(), nwords * sizeof(uint32_t));
          }
        }
        return out;
      },
      py::arg("key"), py::arg("epoch"), py::arg("indices"), py::arg("op_position"), py::arg("nwords"),
      "words[i, w] = word w of the Philox stream (key, epoch << 32 | indices[i]) from block op_position << 32.");

  m.def(
      "augment_taps",
      [](const py::object& start, const py::object& length, size_t out, bool antialias) {
        auto st = readable_array<int64_t>(start, "start");
        auto ln = readable_array<int64_t>(length, "length");
        if (st.ndim() != 1 || ln.ndim() != 1 || st.shape(0) != ln.shape(0)) {
          throw py::value_error("start and length must be 1-D of one length, got " + shape_str(st) + " and " +
                                shape_str(ln));
        }
        if (out == 0 || out >= (size_t(1) << 31)) throw py::value_error("out must be in [1, 2**31)");
        const size_t n = size_t(st.shape(0));
        const int64_t* s0 = static_cast<const int64_t*>(st.data());
        const int64_t* l0 = static_cast<const int64_t*>(ln.data());
        for (size_t i = 0; i < n; ++i) {
          if (s0[i] < 0 || l0[i] < 0 || s0[i] + l0[i] >= (int64_t(1) << 31)) {
            throw py::value_error("boxes must have 0 <= start, 0 <= length and start + length < 2**31");
          }
        }
        py::array_t<int32_t> pairs(n);
        size_t P = 1;
        {
          py::gil_scoped_release nogil;
          P = augment_tap_pairs(l0, n, out, antialias, pairs.mutable_data());
        }
        if (double(n) * double(P) * double(out) * 16.0 > double(size_t(1) << 40)) {
          throw py::value_error("the resampling taps would not fit in memory (the boxes shrink too much)");
        }
        py::array_t<int32_t> i0({n, P, out}), i1({n, P, out});
        py::array_t<float> w0({n, P, out}), w1({n, P, out});
        {
          py::gil_scoped_release nogil;
          augment_taps(s0, l0, n, out, antialias, P, i0.mutable_data(), i1.mutable_data(), w0.mutable_data(),
                       w1.mutable_data());
        }
        return py::make_tuple(i0, i1, w0, w1, pairs);
      },
      py::arg("start"), py::arg("length"), py::arg("out"), py::arg("antialias"),
      "(i0, i1, w0, w1, pairs): the resampling taps of boxes [start, start + length) onto out coordinates "
      "(see regtune/augment.h).");

  m.def(
      "augment_run",
      [](const py::object& images, const py::object& out, bool nchw, bool bilinear, const py::object& row_i0,
         const py::object& row_i1, const py::object& row_w0, const py::object& row_w1, const py::object& col_i0,
         const py::object& col_i1, const py::object& col_w0, const py::object& col_w1, const py::object& fill,
         const py::list& steps, uint64_t key, uint64_t epoch, const py::object& indices, const py::object& row_pairs,
         const py::object& col_pairs) {
        check_epoch(epoch);
        AugmentBatch b{};
        const bool u8 = has_dtype(images, py::dtype::of<uint8_t>());
        auto src = u8 ? readable_array<uint8_t>(images, "images") : readable_array<float>(images, "images");
        if (src.ndim() != 4) throw py::value_error("images must be 4-D (N, H, W, C), got " + shape_str(src));
        const bool out_u8 = has_dtype(out, py::dtype::of<uint8_t>());
        const bool out_bf16 = !out_u8 && float_kind(out) == FloatKind::bf16;
        auto dst = out_u8 ? writable_array<uint8_t>(out, "out")
                          : out_bf16 ? writable_array<bfloat16_t>(out, "out") : writable_array<float>(out, "out");
        if (dst.ndim() != 4) throw py::value_error("out must be 4-D, got " + shape_str(dst));
        b.src = src.data();
        b.src_u8 = u8;
        b.n = size_t(src.shape(0));
        b.in_h = size_t(src.shape(1));
        b.in_w = size_t(src.shape(2));
        b.channels = size_t(src.shape(3));
        b.nchw = nchw;
        b.out_h = size_t(dst.shape(nchw ? 2 : 1));
        b.out_w = size_t(dst.shape(nchw ? 3 : 2));
        const size_t oc = size_t(dst.shape(nchw ? 1 : 3));
        if (size_t(dst.shape(0)) != b.n || oc != b.channels) {
          throw py::value_error("out has shape " + shape_str(dst) + ", which does not match images " + shape_str(src));
        }
        if (b.in_h >= (size_t(1) << 30) || b.in_w >= (size_t(1) << 30) || b.in_w * b.channels >= (size_t(1) << 30) ||
            b.out_w * b.channels >= (size_t(1) << 30)) {
          throw py::value_error("images and out must have fewer than 2**30 elements per row");
        }
        if (b.out_h * b.out_w * b.channels >= (uint64_t(1) << 34)) {
          throw py::value_error("out must have fewer than 2**34 elements per sample");
        }
        b.out = dst.mutable_data();
        b.out_u8 = out_u8;
        b.out_bf16 = out_bf16;
        b.key = key;
        b.epoch = epoch;
        b.indices = sample_indices(indices, b.n);
        AugmentGeometry g{};
        g.bilinear = bilinear;
        std::vector<int32_t> one_pair(b.n, 1);  // no pair counts given: one pair per sample (plain bilinear)
        if (bilinear) {
          // Tap pairs (see AugmentGeometry): P = the tables' width / the axis' length; each
          // sample's count in [1, P].
          auto pairs_of = [&](const py::object& counts, const py::object& i0, const char* cname, const char* tname,
                              size_t len, size_t& P) -> const int32_t* {
            P = 1;
            if (counts.is_none()) return one_pair.data();
            auto t = readable_array<int32_t>(i0, tname);
            if (t.ndim() == 2 && len > 0 && size_t(t.shape(1)) >= len && size_t(t.shape(1)) % len == 0) {
              P = size_t(t.shape(1)) / len;
            }
            auto c = readable_array<int32_t>(counts, cname);
            if (c.ndim() != 1 || size_t(c.shape(0)) != b.n) {
              throw py::value_error(std::string(cname) + " must have shape (" + std::to_string(b.n) + ",), got " +
                                    shape_str(c));
            }
            const int32_t* p = static_cast<const int32_t*>(c.data());
            for (size_t i = 0; i < b.n; ++i) {
              if (p[i] < 1 || size_t(p[i]) > P) {
                throw py::value_error(std::string(cname) + " holds " + std::to_string(p[i]) + ", outside [1, " +
                                      std::to_string(P) + "] (" + tname + " has " + std::to_string(P) +
                                      " tap pairs per coordinate)");
              }
            }
            return p;
          };
          g.row_pairs = pairs_of(row_pairs, row_i0, "row_pairs", "row_i0", b.out_h, g.row_p);
          g.col_pairs = pairs_of(col_pairs, col_i0, "col_pairs", "col_i0", b.out_w, g.col_p);
          const size_t rh = g.row_p * b.out_h, cw = g.col_p * b.out_w;
          g.row_i0 = index_table(row_i0, "row_i0", b.n, rh, b.in_h);
          g.row_i1 = index_table(row_i1, "row_i1", b.n, rh, b.in_h);
          g.col_i0 = index_table(col_i0, "col_i0", b.n, cw, b.in_w);
          g.col_i1 = index_table(col_i1, "col_i1", b.n, cw, b.in_w);
          g.row_w0 = table<float>(row_w0, "row_w0", b.n, rh);
          g.row_w1 = table<float>(row_w1, "row_w1", b.n, rh);
          g.col_w0 = table<float>(col_w0, "col_w0", b.n, cw);
          g.col_w1 = table<float>(col_w1, "col_w1", b.n, cw);
        } else {
          g.row_i0 = index_table(row_i0, "row_i0", b.n, b.out_h, b.in_h);
          g.col_i0 = index_table(col_i0, "col_i0", b.n, b.out_w, b.in_w);
        }
        g.fill = vector_of(fill, "fill", b.channels);
        std::vector<Step> st;
        std::vector<py::object> keep;  // the arrays the steps point into
        for (size_t k = 0; k < steps.size(); ++k) {
          py::object item = steps[k];
          if (!py::isinstance<py::tuple>(item) || py::len(item) != 2 || !py::isinstance<py::str>(item[py::int_(0)]) ||
              !py::isinstance<py::dict>(item[py::int_(1)])) {
            throw py::value_error("each step is (name, fields): a step name of augment's list and a dict");
          }
          const std::string name = item[py::int_(0)].cast<std::string>();
          DictRecord rec(name, item[py::int_(1)].cast<py::dict>(), b, keep);
          Step s;
          if (!make_step(name, rec, s)) throw py::value_error("unknown step '" + name + "'");
          rec.check_all_read();
          st.push_back(std::move(s));
        }
        py::gil_scoped_release nogil;
        augment_run_steps(b, g, st.data(), st.size());
      },
      py::arg("images"), py::arg("out"), py::arg("nchw"), py::arg("bilinear"), py::arg("row_i0"), py::arg("row_i1"),
      py::arg("row_w0"), py::arg("row_w1"), py::arg("col_i0"), py::arg("col_i1"), py::arg("col_w0"),
      py::arg("col_w1"), py::arg("fill"), py::arg("steps"), py::arg("key"), py::arg("epoch"), py::arg("indices"),
      py::arg("row_pairs") = py::none(), py::arg("col_pairs") = py::none(),
      "One augmentation pipeline over a batch (see regtune/augment.h); regtune.augment.Pipeline builds the arguments.");

  m.def(
      "augment_mix",
      [](const py::object& images, const py::object& out, const py::object& lam, const py::object& boxes, bool nchw) {
        const bool u8 = has_dtype(images, py::dtype::of<uint8_t>());
        auto src = u8 ? readable_array<uint8_t>(images, "images") : readable_array<float>(images, "images");
        if (src.ndim() != 4) throw py::value_error("images must be 4-D, got " + shape_str(src));
        auto dst = writable_array<float>(out, "out");
        if (dst.ndim() != 4 || shape_str(dst) != shape_str(src)) {
          throw py::value_error("out must have the shape of images " + shape_str(src) + ", got " + shape_str(dst));
        }
        // Both C-contiguous: they overlap exactly when their byte ranges do. Each sample reads its
        // partner, so no output may share memory with the input.
        const char* s0 = static_cast<const char*>(src.data());
        const char* d0 = static_cast<const char*>(dst.data());
        if (src.nbytes() > 0 && s0 < d0 + dst.nbytes() && d0 < s0 + src.nbytes()) {
          throw py::value_error(
              "out overlaps images; MixUp and CutMix read each sample's partner, so they cannot run in place");
        }
        if (lam.is_none() == boxes.is_none()) {
          throw py::value_error("pass exactly one of lam (MixUp) and boxes (CutMix)");
        }
        AugmentMix mx{};
        mx.src = src.data();
        mx.src_u8 = u8;
        mx.n = size_t(src.shape(0));
        const size_t h = size_t(src.shape(nchw ? 2 : 1)), w = size_t(src.shape(nchw ? 3 : 2));
        const size_t c = size_t(src.shape(nchw ? 1 : 3));
        mx.planes = nchw ? c : 1;
        mx.height = h;
        mx.row = nchw ? w : w * c;
        mx.px = nchw ? 1 : c;
        mx.out = static_cast<float*>(dst.mutable_data());
        if (!lam.is_none()) {
          mx.lam = vector_of(lam, "lam", mx.n);
        } else {
          mx.boxes = table<int32_t>(boxes, "boxes", mx.n, 4);
          for (size_t i = 0; i < mx.n; ++i) {
            const int32_t* p = mx.boxes + 4 * i;
            if (!(0 <= p[0] && p[0] <= p[1] && size_t(p[1]) <= h && 0 <= p[2] && p[2] <= p[3] && size_t(p[3]) <= w)) {
              throw py::value_error("boxes[" + std::to_string(i) + "] = (" + std::to_string(p[0]) + ", " +
                                    std::to_string(p[1]) + ", " + std::to_string(p[2]) + ", " + std::to_string(p[3]) +
                                    ") is not a box (y1, y2, x1, x2) with 0 <= y1 <= y2 <= " + std::to_string(h) +
                                    " and 0 <= x1 <= x2 <= " + std::to_string(w));
            }
          }
        }
        py::gil_scoped_release nogil;
        augment_mix(mx);
      },
      py::arg("images"), py::arg("out"), py::arg("lam"), py::arg("boxes"), py::arg("nchw"),
      "MixUp (lam) or CutMix (boxes) of each sample with the one before it, into float32 out (see "
      "regtune/augment.h); regtune.augment.MixUp and CutMix build the arguments.");
}

}  // namespace regtune::bind

// The augmentation driver: walks each sample's output rows through the three stages of
// regtune/augment.h, calling the selected path's kernels. Threads take whole samples, so a
// sample's result depends on its own parameters and stream alone, whatever the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "dispatch.h"
#include "regtune/augment.h"

namespace regtune {
REGTUNE_DECLARE_MAKERS(AugmentKernels, augment_kernels)

namespace {

const AugmentKernels& kernels() {
  static PerTarget<AugmentKernels> t(REGTUNE_MAKERS(augment_kernels));
  return t.get();
}

// ColorJitter's orders: index -> the parts in order (0 brightness, 1 contrast, 2 saturation),
// itertools.permutations((0, 1, 2)) order.
constexpr int kOrders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};

// Rows per block when no step needs the whole image: about 16 KiB of float32 values, so a
// block's values stay in L1 between the stages.
constexpr size_t kBlockFloats = 4096;

struct Ctx {
  const AugmentBatch* b;
  const AugmentGeometry* g;
  const AugmentStep* steps;
  size_t nsteps;
  size_t elems;       // output elements per sample
  bool whole_image;   // a step needs the whole image at once (ColorJitter's contrast mean)
  std::vector<std::vector<float>> tiled;  // per step: normalize's a and b tiled over one output row
};

class SampleRunner {
 public:
  explicit SampleRunner(const Ctx& c) : c_(c), k_(kernels()) {
    const AugmentBatch& b = *c.b;
    m_ = b.out_w * b.channels;
    block_rows_ = c.whole_image ? b.out_h : std::max<size_t>(1, std::min(b.out_h, kBlockFloats / std::max<size_t>(m_, 1)));
    fr_.resize(b.in_w * b.channels + b.channels);
    i0_.resize(m_);
    i1_.resize(m_);
    w0_.resize(m_);
    w1_.resize(m_);
    if (c.g->bilinear) {
      h_[0].resize(m_);
      h_[1].resize(m_);
    }
    v_.resize(block_rows_ * m_);
    noise_.resize(block_rows_ * m_);
  }

  void run(size_t s) {
    const AugmentBatch& b = *c_.b;
    const AugmentGeometry& g = *c_.g;
    const size_t C = b.channels;
    s_ = s;
    tag_[0] = tag_[1] = -2;
    // The column span the sample reads, and the element tables relative to it.
    const int32_t* ci0 = g.col_i0 + s * b.out_w;
    const int32_t* ci1 = g.bilinear ? g.col_i1 + s * b.out_w : ci0;
    int32_t lo = INT32_MAX, hi = -1;
    for (size_t x = 0; x < b.out_w; ++x) {
      for (int32_t i : {ci0[x], ci1[x]}) {
        if (i >= 0) {
          lo = std::min(lo, i);
          hi = std::max(hi, i);
        }
      }
    }
    span_lo_ = hi >= 0 ? size_t(lo) : 0;
    span_ = hi >= 0 ? size_t(hi - lo + 1) : 0;
    auto rel = [&](int32_t i, size_t c) { return int32_t(i < 0 ? span_ * C + c : (size_t(i) - span_lo_) * C + c); };
    for (size_t x = 0; x < b.out_w; ++x) {
      for (size_t c = 0; c < C; ++c) {
        i0_[x * C + c] = rel(ci0[x], c);
        i1_[x * C + c] = rel(ci1[x], c);
        if (g.bilinear) {
          w0_[x * C + c] = g.col_w0[s * b.out_w + x];
          w1_[x * C + c] = g.col_w1[s * b.out_w + x];
        }
      }
    }
    for (size_t c = 0; c < C; ++c) fr_[span_ * C + c] = g.fill[c];
    for (size_t y0 = 0; y0 < b.out_h; y0 += block_rows_) {
      const size_t y1 = std::min(b.out_h, y0 + block_rows_);
      for (size_t y = y0; y < y1; ++y) geometry(y, v_.data() + (y - y0) * m_);
      bool stored = false;
      for (size_t k = 0; k < c_.nsteps; ++k) stored = step(k, y0, y1);
      if (!stored) store(y0, y1);
    }
  }

 private:
  // fr_ = the span of source row r as float32 (r = -1: the fill values), then the fill slots.
  void load_row(int32_t r) {
    const AugmentBatch& b = *c_.b;
    const size_t C = b.channels, n = span_ * C;
    if (r < 0) {
      for (size_t e = 0; e < n; ++e) fr_[e] = c_.g->fill[e % C];
      return;
    }
    const size_t off = ((s_ * b.in_h + size_t(r)) * b.in_w + span_lo_) * C;
    if (b.src_u8) {
      k_.load_u8(static_cast<const uint8_t*>(b.src) + off, n, fr_.data());
    } else if (n > 0) {
      std::memcpy(fr_.data(), static_cast<const float*>(b.src) + off, n * sizeof(float));
    }
  }

  // The horizontal pass of source row r, from a two-row cache (rows come in order, up or down).
  const float* hrow(int32_t r, int keep) {
    for (int i = 0; i < 2; ++i) {
      if (tag_[i] == r) return h_[i].data();
    }
    const int slot = keep == 0 ? 1 : keep == 1 ? 0 : (tag_[0] == -2 ? 0 : 1);
    load_row(r);
    k_.gather2(fr_.data(), i0_.data(), i1_.data(), w0_.data(), w1_.data(), m_, h_[slot].data());
    tag_[slot] = r;
    return h_[slot].data();
  }

  void geometry(size_t y, float* out) {
    const AugmentBatch& b = *c_.b;
    const AugmentGeometry& g = *c_.g;
    const size_t at = s_ * b.out_h + y;
    if (!g.bilinear) {
      const int32_t r = g.row_i0[at];
      if (r < 0) {
        for (size_t e = 0; e < m_; ++e) out[e] = g.fill[e % b.channels];
        return;
      }
      load_row(r);
      k_.gather(fr_.data(), i0_.data(), m_, out);
      return;
    }
    const int32_t r0 = g.row_i0[at], r1 = g.row_i1[at];
    const float* h0 = hrow(r0, -1);
    const int keep = h0 == h_[0].data() ? 0 : 1;
    const float* h1 = hrow(r1, keep);
    k_.blend(h0, h1, g.row_w0[at], g.row_w1[at], m_, out);
  }

  // Runs step k on rows [y0, y1) of v_; true when it also stored them (a final normalize).
  bool step(size_t k, size_t y0, size_t y1) {
    const AugmentBatch& b = *c_.b;
    const AugmentStep& st = c_.steps[k];
    const size_t C = b.channels, rows = y1 - y0, n = rows * m_;
    float* v = v_.data();
    switch (st.kind) {
      case StepKind::jitter: {
        const float* p = st.per_sample + 4 * s_;
        const int order = std::clamp(int(p[3]), 0, 5);
        for (int part : kOrders[order]) {
          const float f = p[part];
          if (f == 1.0f) continue;
          if (part == 0) {
            k_.scale_clamp(v, n, f, 0.0f, st.bound);
          } else if (part == 1) {
            const size_t npix = rows * b.out_w;
            const float mean = float(k_.gray_sum(v, npix, int(C)) / double(npix));
            const float omf = 1.0f - f;
            k_.scale_clamp(v, n, f, mean * omf, st.bound);
          } else {
            k_.saturation(v, rows * b.out_w, f, st.bound);
          }
        }
        return false;
      }
      case StepKind::noise: {
        const Stream stream{b.key, (b.epoch << 32) | b.indices[s_]};
        const uint64_t first = (uint64_t(uint32_t(st.op_position)) << 34) + y0 * m_;
        random_kernels().normal_f32(stream, first, n, noise_.data(), NormalParams<float>{0.0f, st.std});
        k_.add(v, noise_.data(), n, st.clip, st.bound);
        return false;
      }
      case StepKind::erase: {
        const float* p = st.per_sample + 4 * s_;
        const size_t top = size_t(p[0]), left = size_t(p[1]), h = size_t(p[2]), w = size_t(p[3]);
        const size_t ya = std::max(y0, top), yb = std::min(y1, top + h);
        for (size_t y = ya; y < yb; ++y) {
          float* row = v + (y - y0) * m_ + left * C;
          for (size_t x = 0; x < w; ++x) {
            for (size_t c = 0; c < C; ++c) row[x * C + c] = st.values[c];
          }
        }
        return false;
      }
      case StepKind::normalize: {
        const float* a = c_.tiled[k].data();
        const float* bb = a + m_;
        if (k + 1 == c_.nsteps && !b.out_u8 && !b.nchw) {  // straight into the output
          float* out = static_cast<float*>(b.out) + (s_ * b.out_h + y0) * m_;
          k_.affine(v, out, rows, m_, a, bb);
          return true;
        }
        k_.affine(v, v, rows, m_, a, bb);
        return false;
      }
    }
    return false;
  }

  void store(size_t y0, size_t y1) {
    const AugmentBatch& b = *c_.b;
    const size_t rows = y1 - y0, n = rows * m_;
    if (!b.nchw) {
      const size_t off = (s_ * b.out_h + y0) * m_;
      if (b.out_u8) {
        k_.store_u8(v_.data(), n, static_cast<uint8_t*>(b.out) + off);
      } else {
        std::memcpy(static_cast<float*>(b.out) + off, v_.data(), n * sizeof(float));
      }
      return;
    }
    const size_t plane = b.out_h * b.out_w, off = s_ * b.channels * plane + y0 * b.out_w;
    if (b.out_u8) {
      k_.store_planar_u8(v_.data(), rows * b.out_w, int(b.channels), static_cast<uint8_t*>(b.out) + off, plane);
    } else {
      k_.store_planar_f32(v_.data(), rows * b.out_w, int(b.channels), static_cast<float*>(b.out) + off, plane);
    }
  }

  const Ctx& c_;
  const AugmentKernels& k_;
  size_t m_ = 0, block_rows_ = 1, s_ = 0, span_lo_ = 0, span_ = 0;
  int32_t tag_[2] = {-2, -2};
  std::vector<float> fr_, w0_, w1_, h_[2], v_, noise_;
  std::vector<int32_t> i0_, i1_;
};

}  // namespace

void augment_run(const AugmentBatch& batch, const AugmentGeometry& geo, const AugmentStep* steps, size_t nsteps) {
  Ctx c{&batch, &geo, steps, nsteps, batch.out_h * batch.out_w * batch.channels, false, {}};
  if (batch.n == 0 || c.elems == 0) return;
  const size_t m = batch.out_w * batch.channels;
  c.tiled.resize(nsteps);
  for (size_t k = 0; k < nsteps; ++k) {
    if (steps[k].kind == StepKind::jitter) c.whole_image = true;
    if (steps[k].kind == StepKind::normalize) {
      std::vector<float>& t = c.tiled[k];
      t.resize(2 * m);
      for (size_t e = 0; e < m; ++e) {
        t[e] = steps[k].values[e % batch.channels];
        t[m + e] = steps[k].values[batch.channels + e % batch.channels];
      }
    }
  }
  kernels();  // resolve the table on this thread (call_once) before the workers need it
  parallel_for(
      batch.n * c.elems, c.elems,
      [](void* p, size_t begin, size_t end) {
        const Ctx& cx = *static_cast<const Ctx*>(p);
        SampleRunner runner(cx);
        for (size_t s = begin / cx.elems; s < end / cx.elems; ++s) runner.run(s);
      },
      &c, /*interruptible=*/true);
}

}  // namespace regtune

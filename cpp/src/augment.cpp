// The augmentation driver: walks each sample's output rows through the three stages of
// regtune/augment.h, calling the selected path's kernels. Threads take whole samples, so a
// sample's result depends on its own parameters and stream alone, whatever the thread count.
#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "augment/step.h"
#include "dispatch.h"
#include "regtune/augment.h"

namespace regtune {
REGTUNE_DECLARE_MAKERS(AugmentKernels, augment_kernels)

namespace {

const AugmentKernels& kernels() {
  static PerTarget<AugmentKernels> t(REGTUNE_MAKERS(augment_kernels));
  return t.get();
}

// Rows per block when no step needs the whole image: about 16 KiB of float32 values, so a
// block's values stay in L1 between the stages.
constexpr size_t kBlockFloats = 4096;

// The steps' traits and application; std::monostate (no step) does nothing.
bool whole(const std::monostate&) { return false; }
template <typename S> bool whole(const S& st) { return st.whole_image(); }
bool drawn(const std::monostate&) { return false; }
template <typename S> bool drawn(const S& st) { return st.draws_noise(); }
bool applied(const std::monostate&, StepRun&, float*, size_t, size_t) { return false; }
template <typename S> bool applied(const S& st, StepRun& run, float* v, size_t y0, size_t y1) {
  return st.apply(run, v, y0, y1);
}

struct Ctx {
  const AugmentBatch* b;
  const AugmentGeometry* g;
  const Step* steps;
  size_t nsteps;
  size_t elems;       // output elements per sample
  bool whole_image;   // a step needs the whole image at once (ColorJitter's contrast mean)
};

class SampleRunner {
 public:
  explicit SampleRunner(const Ctx& c) : c_(c), k_(kernels()) {
    const AugmentBatch& b = *c.b;
    const size_t m = b.out_w * b.channels;
    fused_ = c.g->bilinear && b.nchw && !b.out_u8 && !b.out_bf16 && c.nsteps == 1 &&
             std::holds_alternative<normalize>(c.steps[0]);  // a sole normalize fuses with the resize
    block_rows_ = c.whole_image ? b.out_h : std::max<size_t>(1, std::min(b.out_h, kBlockFloats / std::max<size_t>(m, 1)));
    plane_ = block_rows_ * b.out_w;
    const size_t pc = c.g->bilinear ? c.g->col_p : 1;
    off0_.resize(pc * b.out_w);
    off1_.resize(pc * b.out_w);
    rel0_.resize(pc * b.out_w);
    rel1_.resize(pc * b.out_w);
    if (c.g->bilinear) {
      // the rows of one output row (2 per pair) and two more, so that a sliding window keeps
      // the rows it still needs while it fetches the next ones
      const size_t slots = 2 * c.g->row_p + 2;
      h_.resize(slots);
      for (auto& h : h_) h.resize(m);
      tag_.assign(slots, -2);
      need_.resize(2 * c.g->row_p);
      hp_.resize(2 * c.g->row_p);
      hc_.resize(2 * c.g->row_p);
      wts_.resize(2 * c.g->row_p);
      used_.assign(slots, 0);
      if (c.g->row_p > 1) vrow_.resize(m);
    }
    v_.resize(block_rows_ * m);
    bool noise = false;
    for (size_t k = 0; k < c.nsteps; ++k) {
      noise |= std::visit([](const auto& st) { return drawn(st); }, c.steps[k]);
    }
    if (noise) noise_.resize(block_rows_ * m);
    if (b.out_bf16 && !b.nchw) inter_.resize(block_rows_ * m);
    stage_.resize((b.in_w * b.channels + 8) * (b.src_u8 ? 1 : sizeof(float)));
  }

  void run(size_t s) {
    const AugmentBatch& b = *c_.b;
    const AugmentGeometry& g = *c_.g;
    const int32_t C = int32_t(b.channels);
    s_ = s;
    std::fill(tag_.begin(), tag_.end(), -2);
    pc_ = g.bilinear ? size_t(g.col_pairs[s]) : 1;
    pr_ = g.bilinear ? size_t(g.row_pairs[s]) : 1;
    const size_t PC = g.bilinear ? g.col_p : 1;
    for (size_t p = 0; p < pc_; ++p) {
      const int32_t* ci0 = g.col_i0 + (s * PC + p) * b.out_w;
      const int32_t* ci1 = g.bilinear ? g.col_i1 + (s * PC + p) * b.out_w : ci0;
      for (size_t x = 0; x < b.out_w; ++x) {
        off0_[p * b.out_w + x] = ci0[x] < 0 ? -1 : ci0[x] * C;
        off1_[p * b.out_w + x] = ci1[x] < 0 ? -1 : ci1[x] * C;
      }
    }
    find_run();
    find_span();
    if (fused_) {  // bilinear, then only the final Normalize into NCHW float32: row by row, no block
      const normalize& st = std::get<normalize>(c_.steps[0]);
      for (size_t y = 0; y < b.out_h; ++y) {
        const size_t at = s * g.row_p * b.out_h + y;  // pair 0
        const float** h = hp_.data();
        bilinear_rows(y, h);
        if (pr_ > 1) {  // the pairs' sum first (geometry's operations), then the affine map
          vertical(y, h, vrow_.data(), b.out_w);
          for (size_t c = 0; c < b.channels; ++c) {
            float* dst = static_cast<float*>(b.out) + ((s * b.channels + c) * b.out_h + y) * b.out_w;
            k_.affine_stream(vrow_.data() + c * b.out_w, dst, b.out_w, st.values[c], st.values[b.channels + c]);
          }
          continue;
        }
        for (size_t c = 0; c < b.channels; ++c) {
          float* dst = static_cast<float*>(b.out) + ((s * b.channels + c) * b.out_h + y) * b.out_w;
          k_.blend_affine_stream(h[0] + c * b.out_w, h[1] + c * b.out_w, g.row_w0[at], g.row_w1[at], b.out_w,
                                 st.values[c], st.values[b.channels + c], dst);
        }
      }
      return;
    }
    for (size_t y0 = 0; y0 < b.out_h; y0 += block_rows_) {
      const size_t y1 = std::min(b.out_h, y0 + block_rows_);
      for (size_t y = y0; y < y1; ++y) geometry(y, v_.data() + (y - y0) * b.out_w);
      bool stored = false;
      for (size_t k = 0; k < c_.nsteps; ++k) stored = step(k, y0, y1);
      if (!stored) store(y0, y1);
    }
  }

 private:
  // Source row r of this sample (nullptr for r = -1, the fill row), for the gathers: the
  // columns the sample reads are first copied into a small buffer, so the gathers read L1 and
  // the memory reads are sequential (the hardware prefetchers follow them; gathers from a cold
  // image wait on each miss). Measured on 64 500x375 images -> 224x224 NCHW float32, one thread,
  // AVX-512, staged and direct runs alternating in one process: 203 vs 314 us of CPU per image
  // (medians of 12). The buffer's other job is safety: it has 8 spare bytes, so the uint8
  // gathers' 4- and 8-byte reads never leave it. The gathers address it with rel0_/rel1_, the
  // offsets relative to the span's start.
  const void* row(int32_t r) {
    const AugmentBatch& b = *c_.b;
    if (r < 0 || span_hi_ <= span_lo_) return nullptr;  // the fill row, or no column reads the image
    const size_t esize = b.src_u8 ? 1 : sizeof(float);
    const char* src = static_cast<const char*>(b.src) + (s_ * b.in_h + size_t(r)) * b.in_w * b.channels * esize;
    std::memcpy(stage_.data(), src + size_t(span_lo_) * esize, size_t(span_hi_ - span_lo_) * esize);
    return stage_.data();
  }

  // The first and last + 1 element offsets of the row that the sample's columns read.
  void find_span() {
    const AugmentBatch& b = *c_.b;
    span_lo_ = INT32_MAX;
    span_hi_ = 0;
    for (size_t x = 0; x < pc_ * b.out_w; ++x) {
      for (int32_t o : {off0_[x], off1_[x]}) {
        if (o >= 0) {
          span_lo_ = std::min(span_lo_, o);
          span_hi_ = std::max(span_hi_, o + int32_t(b.channels));
        }
      }
    }
    if (span_hi_ == 0) span_lo_ = 0;
    for (size_t x = 0; x < pc_ * b.out_w; ++x) {
      rel0_[x] = off0_[x] < 0 ? -1 : off0_[x] - span_lo_;
      rel1_[x] = off1_[x] < 0 ? -1 : off1_[x] - span_lo_;
    }
  }

  // Source row r read in place, for the sequential runs.
  const void* row_in_place(int32_t r) const {
    const AugmentBatch& b = *c_.b;
    if (r < 0) return nullptr;
    const size_t off = (s_ * b.in_h + size_t(r)) * b.in_w * b.channels;
    return b.src_u8 ? static_cast<const void*>(static_cast<const uint8_t*>(b.src) + off)
                    : static_cast<const void*>(static_cast<const float*>(b.src) + off);
  }

  // The columns of source row r that row() will copy, requested ahead of time: the copy then
  // finds them in cache. Measured as the staging below: 134 vs 165 us of CPU per image.
  void prefetch_row(int32_t r) const {
    if (r < 0 || span_hi_ <= span_lo_ || std::find(tag_.begin(), tag_.end(), r) != tag_.end()) return;
    const AugmentBatch& b = *c_.b;
    const size_t es = b.src_u8 ? 1 : sizeof(float);
    const char* base = static_cast<const char*>(b.src) + (s_ * b.in_h + size_t(r)) * b.in_w * b.channels * es;
    for (size_t o = size_t(span_lo_) * es; o < size_t(span_hi_) * es; o += 64) __builtin_prefetch(base + o);
  }

  // The horizontal pass of source row r into a planar row (plane = out_w): the column pairs
  // summed in order (see AugmentGeometry). Rows are cached (the rows of consecutive output rows
  // overlap, up or down); a new row takes the least recently used slot that holds none of the
  // `nneed` rows the current output row reads.
  const float* hrow(int32_t r, const int32_t* need, size_t nneed) {
    ++clock_;
    for (size_t i = 0; i < tag_.size(); ++i) {
      if (tag_[i] == r) {
        used_[i] = clock_;
        return h_[i].data();
      }
    }
    size_t slot = tag_.size();
    for (size_t i = 0; i < tag_.size(); ++i) {
      if (std::find(need, need + nneed, tag_[i]) != need + nneed) continue;
      if (slot == tag_.size() || used_[i] < used_[slot]) slot = i;
    }
    const AugmentBatch& b = *c_.b;
    const AugmentGeometry& g = *c_.g;
    const void* src = row(r);
    float* h = h_[slot].data();
    const float* w0 = g.col_w0 + s_ * g.col_p * b.out_w;
    const float* w1 = g.col_w1 + s_ * g.col_p * b.out_w;
    const int C = int(b.channels);
    if (pc_ == 1 && b.src_u8) {
      k_.gather2_u8(static_cast<const uint8_t*>(src), rel0_.data(), rel1_.data(), w0, w1, b.out_w, C, g.fill, h, b.out_w);
    } else if (pc_ == 1) {
      k_.gather2_f32(static_cast<const float*>(src), rel0_.data(), rel1_.data(), w0, w1, b.out_w, C, g.fill, h, b.out_w);
    } else if (b.src_u8) {
      k_.gather2n_u8(static_cast<const uint8_t*>(src), rel0_.data(), rel1_.data(), w0, w1, b.out_w, pc_, b.out_w, C,
                     g.fill, h, b.out_w);
    } else {
      k_.gather2n_f32(static_cast<const float*>(src), rel0_.data(), rel1_.data(), w0, w1, b.out_w, pc_, b.out_w, C,
                      g.fill, h, b.out_w);
    }
    tag_[slot] = r;
    used_[slot] = clock_;
    return h;
  }

  // An integer map whose valid columns [run_a_, run_b_) read consecutive source pixels, forward or
  // backward (crops, translations, flips): copied without gathers. run_dir_ = 0: no such run.
  void find_run() {
    const AugmentBatch& b = *c_.b;
    run_dir_ = 0;
    if (c_.g->bilinear) return;
    size_t a = 0;
    while (a < b.out_w && off0_[a] < 0) ++a;
    size_t e = a;
    while (e < b.out_w && off0_[e] >= 0) ++e;
    for (size_t x = e; x < b.out_w; ++x) {
      if (off0_[x] >= 0) return;  // valid columns in two pieces
    }
    if (a == e) return;
    const int32_t C = int32_t(b.channels);
    const int dir = e - a > 1 && off0_[a + 1] < off0_[a] ? -1 : 1;
    for (size_t x = a; x < e; ++x) {
      if (off0_[x] != off0_[a] + int32_t(x - a) * dir * C) return;
    }
    run_a_ = a;
    run_b_ = e;
    run_dir_ = dir;
  }

  // The horizontal passes of output row y's source rows (bilinear maps): h[2p], h[2p + 1] for
  // row pair p < pr_ (h holds 2 * pr_ pointers).
  void bilinear_rows(size_t y, const float** h) {
    const AugmentBatch& b = *c_.b;
    const AugmentGeometry& g = *c_.g;
    const size_t at = s_ * g.row_p * b.out_h + y;  // pair 0; pair p at + p * out_h
    if (y + 2 < b.out_h) {  // two output rows ahead: their source rows on their way to the cache
      prefetch_row(g.row_i0[at + 2]);
      prefetch_row(g.row_i1[at + 2]);
    }
    int32_t* need = need_.data();
    for (size_t p = 0; p < pr_; ++p) {
      need[2 * p] = g.row_i0[at + p * b.out_h];
      need[2 * p + 1] = g.row_i1[at + p * b.out_h];
    }
    for (size_t k = 0; k < 2 * pr_; ++k) h[k] = hrow(need[k], need, 2 * pr_);
  }

  // Output row y into `out` (planar, channel c at out + c * plane) from its source rows h:
  // the pairs blended and summed in order (blendn; one pair: blend).
  void vertical(size_t y, const float* const* h, float* out, size_t plane) {
    const AugmentBatch& b = *c_.b;
    const AugmentGeometry& g = *c_.g;
    const size_t at = s_ * g.row_p * b.out_h + y;
    if (pr_ == 1) {
      for (size_t c = 0; c < b.channels; ++c) {
        k_.blend(h[0] + c * b.out_w, h[1] + c * b.out_w, g.row_w0[at], g.row_w1[at], b.out_w, out + c * plane);
      }
      return;
    }
    for (size_t p = 0; p < pr_; ++p) {
      wts_[2 * p] = g.row_w0[at + p * b.out_h];
      wts_[2 * p + 1] = g.row_w1[at + p * b.out_h];
    }
    for (size_t c = 0; c < b.channels; ++c) {
      for (size_t k = 0; k < 2 * pr_; ++k) hc_[k] = h[k] + c * b.out_w;
      k_.blendn(hc_.data(), wts_.data(), pr_, b.out_w, out + c * plane);
    }
  }

  // Output row y into `out` (planar, channel c at out + c * plane_).
  void geometry(size_t y, float* out) {
    const AugmentBatch& b = *c_.b;
    const AugmentGeometry& g = *c_.g;
    const size_t at = s_ * b.out_h + y;
    if (!g.bilinear) {
      if (run_dir_ != 0 && g.row_i0[at] >= 0) {
        const void* src = row_in_place(g.row_i0[at]);
        for (size_t c = 0; c < b.channels; ++c) {
          float* o = out + c * plane_;
          std::fill(o, o + run_a_, g.fill[c]);
          std::fill(o + run_b_, o + b.out_w, g.fill[c]);
        }
        if (b.src_u8) {
          k_.run_u8(static_cast<const uint8_t*>(src) + off0_[run_a_], run_dir_, run_b_ - run_a_, int(b.channels),
                    out + run_a_, plane_);
        } else {
          k_.run_f32(static_cast<const float*>(src) + off0_[run_a_], run_dir_, run_b_ - run_a_, int(b.channels),
                     out + run_a_, plane_);
        }
        return;
      }
      const void* src = row(g.row_i0[at]);
      if (b.src_u8) {
        k_.gather_u8(static_cast<const uint8_t*>(src), rel0_.data(), b.out_w, int(b.channels), g.fill, out, plane_);
      } else {
        k_.gather_f32(static_cast<const float*>(src), rel0_.data(), b.out_w, int(b.channels), g.fill, out, plane_);
      }
      return;
    }
    bilinear_rows(y, hp_.data());
    vertical(y, hp_.data(), out, plane_);
  }

  // Runs step k on rows [y0, y1) of v_; true when it also stored them (a final normalize).
  bool step(size_t k, size_t y0, size_t y1) {
    StepRun run{*c_.b, k_, s_, plane_, noise_.empty() ? nullptr : noise_.data(), k + 1 == c_.nsteps, scratch_};
    return std::visit([&](const auto& st) { return applied(st, run, v_.data(), y0, y1); }, c_.steps[k]);
  }

  void store(size_t y0, size_t y1) {
    const AugmentBatch& b = *c_.b;
    const size_t C = b.channels, npix = (y1 - y0) * b.out_w;
    if (b.nchw) {
      for (size_t c = 0; c < C; ++c) {
        const size_t off = ((s_ * C + c) * b.out_h + y0) * b.out_w;
        const float* v = v_.data() + c * plane_;
        if (b.out_u8) {
          k_.store_u8(v, npix, static_cast<uint8_t*>(b.out) + off);
        } else if (b.out_bf16) {
          random_kernels().to_bf16(v, npix, static_cast<bfloat16_t*>(b.out) + off);
        } else {
          std::memcpy(static_cast<float*>(b.out) + off, v, npix * sizeof(float));
        }
      }
      return;
    }
    const size_t off = (s_ * b.out_h + y0) * b.out_w * C;
    if (b.out_u8) {
      k_.interleave_u8(v_.data(), plane_, npix, int(C), static_cast<uint8_t*>(b.out) + off);
    } else if (b.out_bf16) {
      k_.interleave_f32(v_.data(), plane_, npix, int(C), inter_.data());
      random_kernels().to_bf16(inter_.data(), npix * C, static_cast<bfloat16_t*>(b.out) + off);
    } else {
      k_.interleave_f32(v_.data(), plane_, npix, int(C), static_cast<float*>(b.out) + off);
    }
  }

  const Ctx& c_;
  const AugmentKernels& k_;
  bool fused_ = false;  // see run()
  size_t block_rows_ = 1, plane_ = 0, s_ = 0, run_a_ = 0, run_b_ = 0;
  size_t pc_ = 1, pr_ = 1;  // the sample's column and row tap pairs
  int run_dir_ = 0;
  std::vector<int32_t> tag_;     // the source row each h_ slot holds (-2: none)
  std::vector<uint64_t> used_;   // when each slot was last read (clock_)
  uint64_t clock_ = 0;
  std::vector<std::vector<float>> h_;
  std::vector<float> vrow_;         // a fused row's sum of pairs
  std::vector<const float*> hc_;   // channel c of the source rows' passes (blendn)
  std::vector<float> wts_;         // the row pairs' weights (blendn)
  std::vector<int32_t> need_;      // the source rows of the current output row
  std::vector<const float*> hp_;   // their horizontal passes
  std::vector<float> v_, noise_, inter_;  // inter_: NHWC float32 on its way to bfloat16
  std::vector<int32_t> off0_, off1_;  // element offsets in a source row (-1: fill)
  std::vector<int32_t> rel0_, rel1_;  // the same from the staged span's start
  std::vector<char> stage_;  // a staged source row (see row())
  StepScratch scratch_;      // the steps' own buffers
  int32_t span_lo_ = 0, span_hi_ = 0;
};

}  // namespace

void augment_run_steps(const AugmentBatch& batch, const AugmentGeometry& geo, const Step* steps, size_t nsteps) {
  Ctx c{&batch, &geo, steps, nsteps, batch.out_h * batch.out_w * batch.channels, false};
  if (batch.n == 0 || c.elems == 0) return;
  for (size_t k = 0; k < nsteps; ++k) c.whole_image |= std::visit([](const auto& st) { return whole(st); }, steps[k]);
  kernels();  // resolve the table on this thread (call_once) before the workers need it
  // The runners of this call, each taken by one chunk at a time and handed back: a chunk holds
  // one or two samples, and a runner's buffers (a whole image of float32 for the policies, with
  // their scratch) allocated per chunk cost page faults and zeroing of fresh memory on every
  // sample (measured: TrivialAugmentWide at 224x224 spent more than a third of its time there).
  // A runner keeps nothing from one sample to the next that the next one reads (run() resets it).
  struct Runners {
    const Ctx& c;
    std::mutex m;
    std::vector<std::unique_ptr<SampleRunner>> idle;
    std::unique_ptr<SampleRunner> take() {
      {
        std::lock_guard<std::mutex> hold(m);
        if (!idle.empty()) {
          std::unique_ptr<SampleRunner> r = std::move(idle.back());
          idle.pop_back();
          return r;
        }
      }
      return std::make_unique<SampleRunner>(c);
    }
    void give(std::unique_ptr<SampleRunner> r) {
      std::lock_guard<std::mutex> hold(m);
      idle.push_back(std::move(r));
    }
  } runners{c, {}, {}};
  parallel_for(
      batch.n * c.elems, c.elems,
      [](void* p, size_t begin, size_t end) {
        Runners& rs = *static_cast<Runners*>(p);
        std::unique_ptr<SampleRunner> runner = rs.take();
        for (size_t s = begin / rs.c.elems; s < end / rs.c.elems; ++s) runner->run(s);
        rs.give(std::move(runner));
        std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the non-temporal stores (an mfence)
      },
      &runners, /*interruptible=*/true);
}

namespace {

// One output coordinate's taps: first, count, and (antialias) the weights of taps first + j.
struct AxisTaps {
  double scale, support, invscale;
  int64_t length, max_count;
  bool antialias;
  AxisTaps(int64_t len, size_t out, bool aa) : length(len), antialias(aa) {
    scale = double(len) / double(out);
    support = scale >= 1.0 ? scale : 1.0;
    invscale = 1.0 / support;
    max_count = int64_t(std::ceil(support)) * 2 + 1;  // torch clips xsize to it
  }
  // torch's xmin and xsize (at least 1) for coordinate o
  void range(size_t o, int64_t& first, int64_t& count) const {
    if (!antialias) {
      first = 0;
      count = 2;
      return;
    }
    const double center = scale * (double(o) + 0.5);
    first = std::max<int64_t>(int64_t(center - support + 0.5), 0);
    const int64_t last = std::min<int64_t>(int64_t(center + support + 0.5), length);
    count = std::clamp<int64_t>(last - first, 1, max_count);
  }
};

}  // namespace

size_t augment_tap_pairs(const int64_t* length, size_t n, size_t out, bool antialias, int32_t* pairs) {
  size_t P = 1;
  for (size_t s = 0; s < n; ++s) {
    const AxisTaps t(length[s], out, antialias);
    int64_t most = 1;
    for (size_t o = 0; o < out; ++o) {
      int64_t first, count;
      t.range(o, first, count);
      most = std::max(most, count);
    }
    pairs[s] = int32_t((most + 1) / 2);
    P = std::max(P, size_t(pairs[s]));
  }
  return P;
}

namespace {

struct TapsCall {
  const int64_t *start, *length;
  size_t out;
  bool antialias;
  size_t P;
  int32_t *i0, *i1;
  float *w0, *w1;
};

// The taps of samples [s0, s1) (see augment_taps).
void taps_of(const TapsCall& a, size_t s0, size_t s1) {
  const int64_t* start = a.start;
  const int64_t* length = a.length;
  const size_t out = a.out, P = a.P;
  const bool antialias = a.antialias;
  int32_t* i0 = a.i0;
  int32_t* i1 = a.i1;
  float* w0 = a.w0;
  float* w1 = a.w1;
  std::vector<int64_t> idx(2 * P);
  std::vector<double> w(2 * P);
  for (size_t s = s0; s < s1; ++s) {
    const AxisTaps t(length[s], out, antialias);
    const int64_t L = length[s];
    for (size_t o = 0; o < out; ++o) {
      int64_t first, count;
      t.range(o, first, count);
      std::fill(w.begin(), w.end(), 0.0);
      if (!antialias) {  // torch's upsample_bilinear2d (align_corners=False)
        const double src = std::max((double(o) + 0.5) * t.scale - 0.5, 0.0);
        const int64_t a = int64_t(std::floor(src));
        idx[0] = std::min(a, L - 1);
        idx[1] = std::min(a + 1, L - 1);
        w[1] = src - double(idx[0]);
        w[0] = 1.0 - w[1];
      } else {  // torch's _compute_weights_aa (bilinear: the triangle filter)
        const double center = t.scale * (double(o) + 0.5);
        double total = 0.0;
        for (int64_t j = 0; j < count; ++j) {
          idx[j] = first + j;
          const double x = ((double(first + j) - center) + 0.5) * t.invscale;
          w[j] = std::max(0.0, 1.0 - std::fabs(x));
          total += w[j];
        }
        if (total != 0.0) {
          for (int64_t j = 0; j < count; ++j) w[j] /= total;
        }
      }
      for (size_t j = size_t(count); j < 2 * P; ++j) idx[j] = idx[count - 1];  // weight 0, a tap it reads
      for (size_t p = 0; p < P; ++p) {
        const size_t at = (s * P + p) * out + o;
        i0[at] = L == 0 ? -1 : int32_t(start[s] + idx[2 * p]);
        i1[at] = L == 0 ? -1 : int32_t(start[s] + idx[2 * p + 1]);
        w0[at] = float(w[2 * p]);
        w1[at] = float(w[2 * p + 1]);
      }
    }
  }
}

}  // namespace

// Samples are independent: threaded by whole samples (each writes its own rows of the tables).
void augment_taps(const int64_t* start, const int64_t* length, size_t n, size_t out, bool antialias, size_t P,
                  int32_t* i0, int32_t* i1, float* w0, float* w1) {
  if (n == 0 || out == 0) return;
  const TapsCall call{start, length, out, antialias, P, i0, i1, w0, w1};
  // the work per sample grows with its taps: weigh each output by its 2 * P taps
  const size_t per = out * 2 * P;
  struct Ctx {
    const TapsCall* call;
    size_t per;
  } ctx{&call, per};
  parallel_for(
      n * per, per,
      [](void* p, size_t begin, size_t end) {
        const Ctx& c = *static_cast<const Ctx*>(p);
        taps_of(*c.call, begin / c.per, end / c.per);
      },
      &ctx);
}

namespace {

// CutMix's copies: n elements of sample s from element `at` of its planes, into out.
void copy_elems(const AugmentMix& m, const AugmentKernels& k, size_t s, size_t at, size_t n, float* out) {
  const size_t off = s * m.planes * m.height * m.row + at;
  if (m.src_u8) {
    k.widen_u8(static_cast<const uint8_t*>(m.src) + off, n, out);
  } else {
    std::memcpy(out, static_cast<const float*>(m.src) + off, n * sizeof(float));
  }
}

void mix_sample(const AugmentMix& m, const AugmentKernels& k, size_t s) {
  const size_t elems = m.planes * m.height * m.row;
  const size_t t = s == 0 ? m.n - 1 : s - 1;  // the partner
  float* out = m.out + s * elems;
  if (m.lam != nullptr) {
    const float l = m.lam[s];
    const float r = 1.0f - l;
    if (m.src_u8) {
      const uint8_t* src = static_cast<const uint8_t*>(m.src);
      k.blend_u8(src + s * elems, src + t * elems, l, r, elems, out);
    } else {
      const float* src = static_cast<const float*>(m.src);
      k.blend(src + s * elems, src + t * elems, l, r, elems, out);
    }
    return;
  }
  const int32_t* bx = m.boxes + 4 * s;
  const size_t y1 = size_t(bx[0]), y2 = size_t(bx[1]), a = size_t(bx[2]) * m.px, e = size_t(bx[3]) * m.px;
  if (y1 >= y2 || a >= e) {  // an empty box: the sample itself
    copy_elems(m, k, s, 0, elems, out);
    return;
  }
  const size_t plane = m.height * m.row;
  for (size_t p = 0; p < m.planes; ++p) {
    const size_t at = p * plane;
    copy_elems(m, k, s, at, y1 * m.row, out + at);  // the rows above the box, in one piece
    for (size_t y = y1; y < y2; ++y) {
      const size_t r = at + y * m.row;
      copy_elems(m, k, s, r, a, out + r);
      copy_elems(m, k, t, r + a, e - a, out + r + a);
      copy_elems(m, k, s, r + e, m.row - e, out + r + e);
    }
    copy_elems(m, k, s, at + y2 * m.row, (m.height - y2) * m.row, out + at + y2 * m.row);  // and below it
  }
}

}  // namespace

void augment_mix(const AugmentMix& mix) {
  const size_t elems = mix.planes * mix.height * mix.row;
  if (mix.n == 0 || elems == 0) return;
  kernels();  // resolve the table on this thread before the workers need it
  parallel_for(
      mix.n * elems, elems,
      [](void* p, size_t begin, size_t end) {
        const AugmentMix& m = *static_cast<const AugmentMix*>(p);
        const size_t elems = m.planes * m.height * m.row;
        const AugmentKernels& k = kernels();
        for (size_t s = begin / elems; s < end / elems; ++s) mix_sample(m, k, s);
      },
      const_cast<AugmentMix*>(&mix), /*interruptible=*/true);
}

}  // namespace regtune

// Threaded drivers for the optimizer rules and the penalty kernels, over typed descriptors.
//
// A list of tensors is laid end to end in one index space, each tensor starting on an aligned
// index; parallel_for splits that space into aligned chunks, and each chunk is walked tensor
// by tensor. So 200 small tensors spread over the threads as one large one does, and no two
// threads write one cache line (for arrays aligned to one).
#include "optim/driver.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "optim/blockwise8.h"
#include "optim/dynamic_map.h"

namespace regtune {
REGTUNE_DECLARE_MAKERS(OptimTable, optim_table)

const OptimTable& optim_kernels() {
  static PerTarget<OptimTable> tables(REGTUNE_MAKERS(optim_table));
  return tables.get();
}

const RuleInfo* optim_rules(int* count) {
  *count = optim_kernels().nrules;
  return optim_kernels().rules;
}

const Field* fused_fields(int* count) {
  *count = Fused::nfields;
  return Fused::fields.data();
}

int optim_rule_id(const char* name) {
  int n;
  const RuleInfo* r = optim_rules(&n);
  for (int i = 0; i < n; ++i) {
    if (std::strcmp(r[i].name, name) == 0) return i;
  }
  return -1;
}

const Field* adafactor_fields(int* count) {
  *count = optim_kernels().adafactor_nfields;
  return optim_kernels().adafactor_fields;
}

void list_sums(const Array* x, const size_t* sizes, size_t count, double* abs_sum, double* sq_sum) {
  const Layout layout(sizes, count, [](size_t) { return kReduceBlock; });
  std::vector<double> part(2 * (layout.total / kReduceBlock), 0.0);
  const auto sums = optim_kernels().sums;
  auto body = [&](size_t b, size_t e) {
    layout.walk(sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
      for (size_t s = lo; s < hi; s += kReduceBlock) {
        Array a = x[t];
        a.data = static_cast<char*>(a.data) + s * bytes_of(a.dt);
        sums(a, std::min(kReduceBlock, hi - s), &part[2 * ((layout.start[t] + s) / kReduceBlock)]);
      }
    });
  };
  parallel(layout.total, kReduceBlock, body);
  double a = 0.0, q = 0.0;  // in block order, whatever the thread count
  for (size_t j = 0; j < part.size(); j += 2) {
    a += part[j];
    q += part[j + 1];
  }
  *abs_sum = a;
  *sq_sum = q;
}

double clip_coefficient(double total_norm, double max_norm) {
  const double c = max_norm / (total_norm + 1e-6);
  return std::isnan(c) ? c : std::min(c, 1.0);
}

double clip_fused(const Tensor* tensors, size_t count, double max_grad_norm, Values& fused) {
  if (!(max_grad_norm > 0)) return std::nan("");
  std::vector<Array> g(count);
  std::vector<size_t> sizes(count);
  for (size_t t = 0; t < count; ++t) g[t] = tensors[t].grad, sizes[t] = tensors[t].size;
  double abs_sum, sq_sum;
  list_sums(g.data(), sizes.data(), count, &abs_sum, &sq_sum);
  const double norm = std::sqrt(sq_sum);
  const double c = clip_coefficient(norm, max_grad_norm);
  if (!(c >= 1.0)) {
    fused.v[Fused::clip_index] = c;
    fused.given[Fused::clip_index] = true;
  }
  return norm;
}

double optim_step(int rule, const Tensor* tensors, size_t count, const Values& coef, const Values& fused_in,
                  double max_grad_norm, const SumsReduce& reduce) {
  const OptimTable& k = optim_kernels();
  Values fused = fused_in;
  const double norm = clip_fused(tensors, count, max_grad_norm, fused);
  std::vector<size_t> sizes(count);
  for (size_t t = 0; t < count; ++t) sizes[t] = tensors[t].size;
  std::vector<Values> coefs, fuseds;  // rules with a trust ratio: each tensor's coefficients
  if (k.first[rule]) {
    // First pass: the two sums of squares of every block, then each tensor's in block order.
    const Layout blocks(sizes.data(), count, [](size_t) { return kReduceBlock; });
    std::vector<double> part(2 * (blocks.total / kReduceBlock), 0.0);
    auto first = [&](size_t b, size_t e) {
      blocks.walk(sizes.data(), b, e, [&](size_t t, size_t lo, size_t hi) {
        for (size_t s = lo; s < hi; s += kReduceBlock) {
          k.first[rule](tensors[t], s, std::min(kReduceBlock, hi - s), coef, fused,
                        &part[2 * ((blocks.start[t] + s) / kReduceBlock)]);
        }
      });
    };
    parallel(blocks.total, kReduceBlock, first);
    coefs.assign(count, coef);
    fuseds.assign(count, fused);
    std::vector<double> sums(2 * count, 0.0);
    for (size_t t = 0; t < count; ++t) {
      const size_t b0 = blocks.start[t] / kReduceBlock, nb = (sizes[t] + kReduceBlock - 1) / kReduceBlock;
      for (size_t j = b0; j < b0 + nb; ++j) {
        sums[2 * t] += part[2 * j];
        sums[2 * t + 1] += part[2 * j + 1];
      }
    }
    if (reduce) reduce(sums.data(), count);
    for (size_t t = 0; t < count; ++t) k.trust[rule](coefs[t], fuseds[t], sums[2 * t], sums[2 * t + 1], tensors[t].adapt);
  }
  const Layout layout(sizes.data(), count, [&](size_t t) { return chunk_align(tensors[t]); });
  const auto step = k.step[rule];
  auto body = [&](size_t b, size_t e) {
    layout.walk(sizes.data(), b, e, [&](size_t t, size_t lo, size_t hi) {
      step(tensors[t], lo, hi - lo, coefs.empty() ? coef : coefs[t], fuseds.empty() ? fused : fuseds[t]);
    });
  };
  parallel(layout.total, layout.align, body);
  return norm;
}

// ------------------------------------------------------------------------- blockwise 8-bit
namespace {
float float_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// The number of thresholds below x: the exact search.
int q8_below(const Q8Map& m, float x) {
  int lo = 0, hi = 255;  // thr[0, 255) is increasing; thr[255] = inf
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (m.thr[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

float next_down(float x) { return std::nextafter(x, -std::numeric_limits<float>::infinity()); }
float next_up(float x) { return std::nextafter(x, std::numeric_limits<float>::infinity()); }

// The tables of one map (see optim/blockwise8.h): the values, the thresholds, the levels of
// bitsandbytes' construction (decade l holds 2**l values per sign, or 2**(l + 1) in the unsigned
// map); false when the map is not built that way or a threshold strays from its position.
bool build_map(Q8Map& m, const uint32_t* bits, bool is_signed) {
  for (int j = 0; j < 256; ++j) m.code[j] = float_of(bits[j]);
  for (int j = 0; j < 255; ++j) {
    const double mid = (double(m.code[j]) + double(m.code[j + 1])) / 2;  // exact
    float t = float(mid);
    if (double(t) > mid) t = next_down(t);
    m.thr[j] = t;
  }
  m.thr[255] = std::numeric_limits<float>::infinity();
  m.is_signed = is_signed;
  m.zero = uint32_t(q8_below(m, 0.0f));
  bool ok = m.code[m.zero] == 0.0f && m.code[255] == 1.0f;
  // level 0: the code of 0 alone
  m.scale[0] = 0.0f, m.offset[0] = 0.5f, m.jmax[0] = 0.0f, m.near_hi[0] = 1.0f;
  m.start_pos[0] = m.start_neg[0] = m.zero;
  uint32_t pos = m.zero + 1, neg = m.zero - 1;  // the next code up / down
  // 10^(l-6) as literals, not std::pow: pow's current symbol is GLIBC_2.29, above the wheel's floor
  static constexpr double kDecade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  for (int l = 0; l < 7; ++l) {
    const int L = l + 1, n = is_signed ? 1 << l : 2 << l;
    const double decade = kDecade[l];
    m.scale[L] = float(n / (0.9 * decade));
    m.offset[L] = float(-n / 9.0);
    m.jmax[L] = float(n - 1);
    m.near_hi[L] = float(std::max(n - 1, 1));
    m.start_pos[L] = pos;
    m.div_pos[l] = m.thr[pos - 1];  // between the level below and this one
    for (int j = 0; j < n; ++j) ok = ok && m.code[pos + j] > 0.1 * decade * 0.999 && m.code[pos + j] < decade;
    auto on_position = [&](float a, int j) {  // a's position is within half the margin of j
      const float u = std::fma(a, m.scale[L], m.offset[L]);
      return std::fabs(u - float(j)) < kQ8Margin / 2;
    };
    for (int j = 1; j < n; ++j) {
      const float t = m.thr[pos + j - 1];  // x > t: x is nearer code[pos + j]
      ok = ok && on_position(t, j) && on_position(next_up(t), j);
    }
    if (is_signed) {
      m.start_neg[L] = neg;
      m.div_neg[l] = next_down(-m.thr[neg]);  // |x| > this: x <= thr[neg], in this level or beyond
      for (int j = 0; j < n; ++j) ok = ok && m.code[neg - j] == -m.code[pos + j];
      for (int j = 1; j < n; ++j) {
        const float t = -m.thr[neg - j];  // |x| >= t: x is nearer code[neg - j]
        ok = ok && on_position(t, j) && on_position(next_down(t), j);
      }
      neg -= uint32_t(n);
    } else {
      m.start_neg[L] = 0;
      m.div_neg[l] = 0.0f;  // (the unsigned map has no negative values: a negative x is 0's code)
    }
    pos += uint32_t(n);
  }
  ok = ok && pos == 255 && (!is_signed || neg == uint32_t(-1));
  m.div_pos[7] = m.thr[254];
  m.div_neg[7] = std::numeric_limits<float>::infinity();
  m.top = 255;
  // by octave: [2**(e - 31), 2**(e - 30)), the lowest taking every smaller magnitude
  for (int e = 0; e < 32; ++e) {
    const float lo = e == 0 ? 0.0f : std::ldexp(1.0f, e - 31), hi = std::ldexp(1.0f, e - 30);
    for (int neg = 0; neg < (is_signed ? 2 : 1); ++neg) {
      const float* div = neg ? m.div_neg : m.div_pos;
      uint32_t base = 0, inside = 0;
      float d = std::numeric_limits<float>::infinity();
      for (int k = 0; k < 8; ++k) {
        if (div[k] < lo) ++base;
        else if (div[k] < hi) ++inside, d = div[k];
      }
      ok = ok && inside <= 1;
      (neg ? m.oct_base_neg : m.oct_base_pos)[e] = base;
      (neg ? m.oct_div_neg : m.oct_div_pos)[e] = d;
    }
    if (!is_signed) m.oct_base_neg[e] = m.oct_base_pos[e], m.oct_div_neg[e] = m.oct_div_pos[e];  // (unused)
  }
  return ok;
}

Q8Tables make_q8_tables() {
  Q8Tables t{};
  const bool s = build_map(t.map[0], kDynamicSigned, true);
  const bool u = build_map(t.map[1], kDynamicUnsigned, false);
  t.valid = s && u;
  return t;
}
}  // namespace

const Q8Tables& q8_tables() {
  static const Q8Tables tables = make_q8_tables();
  return tables;
}

const float* dynamic_map(bool is_signed) { return q8_tables().map[is_signed ? 0 : 1].code; }

void quantize_blockwise(const float* x, size_t n, uint8_t* codes, float* absmax, bool is_signed) {
  const auto k = optim_kernels().q8_encode;
  auto body = [&](size_t b, size_t e) { k(x + b, e - b, codes + b, absmax + b / kQ8Block, is_signed); };
  parallel(n, kQ8Block, body);
}

void dequantize_blockwise(const uint8_t* codes, const float* absmax, size_t n, float* out, bool is_signed) {
  const auto k = optim_kernels().q8_decode;
  auto body = [&](size_t b, size_t e) { k(codes + b, absmax + b / kQ8Block, e - b, out + b, is_signed); };
  parallel(n, kQ8Block, body);
}

namespace {
// f(begin, end) over one array of n elements, in chunks of whole cache lines of it.
template <typename F>
void over_array(Array x, size_t n, F f) {
  auto body = [&](size_t b, size_t e) { f(b, e); };
  parallel(n, is_16bit(x.dt) ? kLowAlign : kLineBytes / bytes_of(x.dt), body);
}
Array offset(Array a, size_t i) {
  if (a.data) a.data = static_cast<char*>(a.data) + i * bytes_of(a.dt);
  return a;
}
}  // namespace

void scale_list(const Array* x, const size_t* sizes, size_t count, double s, bool clamp) {
  const Layout layout(sizes, count, [&](size_t t) { return is_16bit(x[t].dt) ? kLowAlign : kLineBytes / bytes_of(x[t].dt); });
  const auto k = clamp ? optim_kernels().clamp : optim_kernels().scale;
  auto body = [&](size_t b, size_t e) {
    layout.walk(sizes, b, e, [&](size_t t, size_t lo, size_t hi) { k(offset(x[t], lo), hi - lo, s); });
  };
  parallel(layout.total, layout.align, body);
}

void add_penalty_grad(Array g, Array w, size_t n, double l1, double l2) {
  const auto k = optim_kernels().penalty_grad;
  over_array(g, n, [&](size_t b, size_t e) { k(offset(g, b), offset(w, b), e - b, l1, l2); });
}

void prox_l1(Array w, size_t n, double threshold) {
  const auto k = optim_kernels().prox_l1;
  over_array(w, n, [&](size_t b, size_t e) { k(offset(w, b), e - b, threshold); });
}

}  // namespace regtune

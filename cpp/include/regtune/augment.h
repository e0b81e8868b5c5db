// Image augmentation kernels (regtune.augment): plain pointers and counts, no SIMD types.
//
// A pipeline is applied to each sample in three stages, all inside one pass over its output rows:
//   1. geometry: output pixel (y, x) reads the input through per-axis maps, one entry per output
//      row and column, each (i0, i1, w0, w1): the value along an axis is w0 * src[i0] + w1 * src[i1]
//      (float32: two multiplies, one add); an index of -1 reads the fill value. Integer maps (crops,
//      flips, translations) have i1 = i0 and read src[i0] directly, no arithmetic. Bilinear maps
//      blend the two taps of each row (horizontal), then the two rows (vertical):
//        h_r[x, c] = w0x[x] * src[r, i0x[x], c] + w1x[x] * src[r, i1x[x], c]
//        v[y, x, c] = w0y[y] * h_{i0y[y]}[x, c] + w1y[y] * h_{i1y[y]}[x, c]
//   2. pointwise steps on the float32 values, in the pipeline's order (see AugmentStep);
//   3. the store: float32 as is, bfloat16 rounded to nearest even (random_kernels().to_bf16), or
//      uint8 rounded to nearest even after clamping to [0, 255]; NHWC, or NCHW (planes).
// Every operation is a single IEEE-754 float32 operation in a fixed order, so every SIMD path
// gives the same bits. Per-sample random choices are made by the caller (Python, from Philox
// words keyed by (seed, epoch, sample index, op position)); the only random numbers drawn here are
// GaussianNoise's, normal draws of the Philox stream (key, epoch << 32 | index) from word
// op_position << 34, element e of the sample's output (in NHWC order) taking word first + e.
#pragma once

#include <cstddef>
#include <cstdint>

#include "regtune/kernels.h"

namespace regtune {

// One instruction set's kernels, each on the calling thread. Values between the stages are
// planar float32: channel c of a block of output rows at v + c * plane, pixel p at [p].
struct AugmentKernels {
  const char* name;
  // Gathers of npx output pixels from one source row (nullptr: a row of fill values):
  // off[x] = the pixel's element offset in the row (i * C), or -1 for the fill value.
  //   gather:  out[c * plane + x] = row[off0[x] + c]
  //   gather2: out[c * plane + x] = w0[x] * row[off0[x] + c] + w1[x] * row[off1[x] + c]
  // The uint8 gathers read 4 bytes at each offset (gather2_u8 with 3 channels: 8 bytes): the
  // caller makes sure 8 bytes past the row's last pixel are readable (they are never used).
  void (*gather_u8)(const uint8_t* row, const int32_t* off0, size_t npx, int channels, const float* fill, float* out,
                    size_t plane);
  void (*gather_f32)(const float* row, const int32_t* off0, size_t npx, int channels, const float* fill, float* out,
                     size_t plane);
  void (*gather2_u8)(const uint8_t* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                     size_t npx, int channels, const float* fill, float* out, size_t plane);
  void (*gather2_f32)(const float* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                      size_t npx, int channels, const float* fill, float* out, size_t plane);
  // gather2 with `pairs` tap pairs per pixel, pair p's offsets and weights at + p * stride: the
  // pairs' values summed in pair order (acc = pair 0; acc = acc + pair p), the same bits as
  // gather2 of each pair followed by adds.
  void (*gather2n_u8)(const uint8_t* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                      size_t stride, size_t pairs, size_t npx, int channels, const float* fill, float* out,
                      size_t plane);
  void (*gather2n_f32)(const float* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                       size_t stride, size_t pairs, size_t npx, int channels, const float* fill, float* out,
                       size_t plane);
  // A run of npx pixels read in order (dir 1) or reversed (dir -1) from `row` (pixel 0 at row):
  // out[c * plane + x] = row[dir * x * C + c]. Integer maps with such runs skip the gathers.
  void (*run_u8)(const uint8_t* row, int dir, size_t npx, int channels, float* out, size_t plane);
  void (*run_f32)(const float* row, int dir, size_t npx, int channels, float* out, size_t plane);
  // out[e] = w0 * a[e] + w1 * b[e]
  void (*blend)(const float* a, const float* b, float w0, float w1, size_t n, float* out);
  // out[e] = sum over pairs p of (w[2p] * rows[2p][e] + w[2p + 1] * rows[2p + 1][e]), pair by
  // pair in order (acc = pair 0; acc = acc + pair p): blend's operations, then adds.
  void (*blendn)(const float* const* rows, const float* w, size_t pairs, size_t n, float* out);
  // affine (below) into the output array with non-temporal stores for its whole cache lines;
  // the caller issues a store fence before the results are read (augment_run does, at its end).
  void (*affine_stream)(const float* v, float* out, size_t n, float a, float b);
  // blend, then affine (a, b) into the output with affine_stream's stores: the same bits as the two.
  void (*blend_affine_stream)(const float* x, const float* y, float w0, float w1, size_t n, float a, float b,
                              float* out);
  // v[e] = min(max(v[e] * f + g, 0), bound)  (NaN -> 0)
  void (*scale_clamp)(float* v, size_t n, float f, float g, float bound);
  // Saturation on 3 planes: gray = (0.2989 r + 0.587 g) + 0.114 b (torchvision's weights; three
  // multiplies, two adds); each channel v = min(max(v * f + gray * (1 - f), 0), bound), 1 - f
  // rounded once.
  void (*saturation)(float* v, size_t plane, size_t npix, float f, float bound);
  // Hue shift on 3 planes with values in [0, bound]: torchvision's _rgb2hsv, h = (h + factor) mod 1
  // (torch's remainder), _hsv2rgb, in float32 in its operation order, at the scale `bound` (the
  // ratios that give hue and saturation do not depend on it; p, q, t clamp to [0, bound]).
  void (*hue)(float* v, size_t plane, size_t npix, float factor, float bound);
  // The sum of the pixels' gray values (C = 3) or values (C = 1) in double, in 8 interleaved
  // partial sums (pixel p into sum p % 8) combined in index order: the same on every path.
  double (*gray_sum)(const float* v, size_t plane, size_t npix, int channels);
  // v[c * plane + p] += noise[p * C + c] (noise in NHWC order), then clamped to [0, bound] when clip.
  void (*add_noise)(float* v, size_t plane, const float* noise, size_t npix, int channels, bool clip, float bound);
  // out[e] = v[e] * a + b (multiply, then add); out may be v.
  void (*affine)(const float* v, float* out, size_t n, float a, float b);
  // out[e] = round-to-nearest-even(clamp(v[e], 0, 255)) (NaN -> 0)
  void (*store_u8)(const float* v, size_t n, uint8_t* out);
  // NHWC stores: out[p * C + c] = v[c * plane + p] (as float32, or as store_u8 does).
  void (*interleave_f32)(const float* v, size_t plane, size_t npix, int channels, float* out);
  void (*interleave_u8)(const float* v, size_t plane, size_t npix, int channels, uint8_t* out);
  // MixUp on uint8 images: out[e] = w0 * float(a[e]) + w1 * float(b[e]) (blend's operations, so
  // float32 images use blend itself). a and b may be the same array.
  void (*blend_u8)(const uint8_t* a, const uint8_t* b, float w0, float w1, size_t n, float* out);
  // out[e] = float(a[e]) (exact): CutMix's copies of uint8 images.
  void (*widen_u8)(const uint8_t* a, size_t n, float* out);
  // Row y of an affine map with nearest sampling on a W x H image (the policies' geometric ops):
  // out[x] = the source pixel's offset iy * W + ix, or -1 outside the image, as torchvision's
  // _affine_grid + grid_sample(nearest, align_corners=False) in torch's float32 operations:
  // X = x - (W - 1) / 2, Y = y - (H - 1) / 2, g = (X * t[0] + Y * t[1]) + t[2] (x) and
  // (X * t[3] + Y * t[4]) + t[5] (y), the source coordinate ((g + 1) * side - 1) / 2 rounded half
  // to even (sides of at most 2^22).
  void (*affine_row)(const float* t, size_t y, size_t W, size_t H, int32_t* out);
};

// The pointwise steps (stage 2), in order, are the structs of cpp/src/augment/steps.def (see
// cpp/src/augment/step.h): ColorJitter, GaussianNoise, RandomErasing, Normalize.

// Resampling maps (bilinear) may have more than two taps per output coordinate (an antialiased
// resize: a triangle filter as wide as the scale): their taps come in P pairs, pair p of output
// coordinate o at [(s * P + p) * out + o] of each table, and the value along the axis is the sum
// of the pairs in order, each pair blended as above:
//   acc = pair 0; acc = acc + pair p (p = 1 .. pairs[s] - 1)   (float32, left to right)
// Sample s uses its first row_pairs[s] (col_pairs[s]) pairs, so its values depend on its own
// taps only, not on the widest sample of the batch. A pair that pads a coordinate with fewer
// taps has weight 0 on a pixel the coordinate already reads. P = 1 is the plain 2-tap blend.
struct AugmentGeometry {
  bool bilinear;
  size_t row_p = 1, col_p = 1;  // P of the row and column tables (1 for integer maps)
  const int32_t* row_pairs = nullptr;  // n (bilinear): pairs used by each sample, in [1, row_p]
  const int32_t* col_pairs = nullptr;
  const int32_t* row_i0;  // n x P x out_h (integer maps: n x out_h)
  const int32_t* row_i1;
  const float* row_w0;
  const float* row_w1;
  const int32_t* col_i0;  // n x P x out_w
  const int32_t* col_i1;
  const float* col_w0;
  const float* col_w1;
  const float* fill;      // C values for index -1
};

struct AugmentBatch {
  const void* src;  // n x in_h x in_w x C, uint8 or float32
  bool src_u8;
  size_t n, in_h, in_w, channels, out_h, out_w;
  void* out;        // n x out_h x out_w x C (NHWC) or n x C x out_h x out_w (NCHW)
  bool out_u8, out_bf16, nchw;  // float32 when neither; bfloat16 rounds to nearest even
  uint64_t key, epoch;
  const uint64_t* indices;  // n sample indices (the noise streams)
};

// The resampling taps of boxes [start[s], start[s] + length[s]) onto `out` coordinates,
// align_corners=False (regtune.augment's _bilinear_taps documents the formulas: torch's
// upsample_bilinear2d taps, or with antialias its _compute_weights_aa), in float64, weights
// rounded to float32 once. augment_tap_pairs returns each sample's pair count (pairs[s]) and
// their maximum P; augment_taps fills i0, i1, w0, w1 (n x P x out each) for that P: pair p of
// coordinate o holds taps 2p and 2p + 1; a coordinate with fewer taps than 2 P repeats its last
// tap with weight 0; an empty box reads index -1 (the fill value).
size_t augment_tap_pairs(const int64_t* length, size_t n, size_t out, bool antialias, int32_t* pairs);
void augment_taps(const int64_t* start, const int64_t* length, size_t n, size_t out, bool antialias, size_t P,
                  int32_t* i0, int32_t* i1, float* w0, float* w1);

// The pipeline runs on every sample, threaded across samples (whole samples per chunk):
// augment_run_steps in cpp/src/augment/step.h.

// MixUp and CutMix on a batch: sample s is mixed with its partner t = s - 1 (sample 0 with
// sample n - 1, torchvision's batch.roll(1, 0)), into float32 `out` (which must not overlap src).
// A sample is `planes` planes of `height` rows of `row` elements, `px` elements per pixel (NHWC:
// 1 x H x W*C, px = C; NCHW: C x H x W, px = 1).
//   MixUp (lam set):    out[s] = lam[s] * src[s] + (1 - lam[s]) * src[t], 1 - lam[s] rounded to
//                       float32 once; the same float32 operations as NumPy's
//                       lx * x + (1 - lx) * np.roll(x, 1, axis=0), so the same bits.
//   CutMix (boxes set): out[s] = src[s], except rows [y1, y2) x columns [x1, x2) of every plane,
//                       which are src[t]'s; boxes[s] = (y1, y2, x1, x2), y2 <= height, x2 * px <= row.
// uint8 sources are read as 0..255 (exactly). Threaded across samples (whole samples per chunk).
struct AugmentMix {
  const void* src;
  bool src_u8;
  size_t n, planes, height, row, px;
  float* out;
  const float* lam;      // n lambdas (MixUp), or nullptr
  const int32_t* boxes;  // n x 4 (CutMix), or nullptr
};
void augment_mix(const AugmentMix& mix);

}  // namespace regtune

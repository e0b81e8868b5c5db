// Blockwise 8-bit state: the tables of the encoding (baseline code, built once on first use),
// shared by every target. See regtune/optim.h (DType::q8s, q8u) for what a code stands for.
//
// Encoding x (a value times the reciprocal of its block's absmax, clamped to [-1, 1]) is a
// search for the nearest of the map's 256 values: a code's threshold thr[j] is the midpoint of
// code[j] and code[j + 1] rounded down to a float, so x > thr[j] says exactly that x is nearer
// code[j + 1] (a tie goes to the lower code), and the code is the number of thresholds below x.
//
// The vector kernels find it without a table lookup per element. bitsandbytes' dynamic map is
// made of levels (decades 10**(l - 6), l = 0..6) of evenly spaced values; the 8 thresholds
// between levels give the level L exactly (0: the code of 0; 1..7: a decade; 8: above the
// largest decade, 1.0), found from the octave of |x| and one comparison, and within a decade u = |x| * scale[L] + offset[L] is |x|'s
// position in units of the values' spacing: the code is start[L] +- floor(u). The thresholds
// inside a level sit within kQ8Margin / 2 of whole positions (checked when the tables are built),
// so floor(u) is exact unless u lies within kQ8Margin of a whole number; a vector with such a
// lane (about 1 in 200) takes the exact search, a binary search of thr, instead.
#pragma once

#include <cstddef>
#include <cstdint>

namespace regtune {

constexpr float kQ8Margin = 1.0f / 4096;

struct Q8Map {
  float code[256];  // the values, increasing
  float thr[256];   // thr[j] for j < 255 (see above); thr[255] = +inf
  uint32_t zero;    // the code of 0
  bool is_signed;
  // The levels (index L < 8; L = 8 shares L = 7's row and is handled apart): |x| is in level L
  // when div_pos[L - 1] < |x| <= div_pos[L] (x > 0), with div_neg for x < 0 (the thresholds of
  // the negative half, as magnitudes: a tie there goes to the larger magnitude).
  float div_pos[8], div_neg[8];
  // The same dividers by octave of |x| (e = its exponent - 96, clamped to [0, 31]): no octave
  // holds two of them, so the level is oct_base[e] + (|x| > oct_div[e]) (oct_div: +inf where
  // the octave holds none); _neg for x < 0.
  float oct_div_pos[32], oct_div_neg[32];
  uint32_t oct_base_pos[32], oct_base_neg[32];
  float scale[8], offset[8];
  float jmax[8];  // the last position in the level (its count of values - 1)
  float near_hi[8];  // max(jmax, 1): the last inner threshold's position (see kQ8Margin)
  uint32_t start_pos[8], start_neg[8];  // code = start_pos + j (x > 0) or start_neg - j (x < 0)
  uint32_t top;  // the code above div_pos[7] (1.0)
};

struct Q8Tables {
  Q8Map map[2];  // [0]: signed (states of either sign), [1]: unsigned (never negative)
  bool valid;    // the levels and margins hold as described (the vector search is exact)
};

const Q8Tables& q8_tables();

}  // namespace regtune

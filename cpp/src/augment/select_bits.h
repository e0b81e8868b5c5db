// c ? a : b on floats by bit masks, for the per-pixel loops of the baseline steps and of every
// target's kernels. GCC keeps a float `c ? a : b` whose operands are computed as a branch
// (-ftrapping-math: an operation may not run speculatively); a branch on pixel values
// mispredicts on every other pixel and keeps the loop scalar (solarize ran 7x slower than
// invert), while this form vectorizes. Internal linkage: each target compiles its own copy.
#pragma once

#include <cstdint>
#include <cstring>

namespace regtune {
namespace {

inline float select_bits(bool c, float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  const uint32_t m = 0u - uint32_t(c);
  const uint32_t r = (ua & m) | (ub & ~m);
  float f;
  std::memcpy(&f, &r, 4);
  return f;
}

}  // namespace
}  // namespace regtune

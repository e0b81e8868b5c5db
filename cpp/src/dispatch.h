// Per-area kernel tables, one per SIMD path, resolved against the path selected at import.
//
// Each area (random, dropout, optim, ...) defines a table struct of function pointers and, in
// its per-target source, a maker `Table NAME()` in namespaces scalar/avx2/avx512. The maker of
// a path is called only once that path is selected: per-target code may use its target's
// instructions, so nothing from an unsupported target ever runs.
#pragma once

#include <mutex>

#include "regtune/kernels.h"

namespace regtune {

template <typename Table>
class PerTarget {
 public:
  using Maker = Table (*)();
  PerTarget(Maker scalar, Maker avx2, Maker avx512) : makers_{scalar, avx2, avx512} {}
  const Table& get() {
    const int i = int(current_simd());
    std::call_once(once_[i], [&] { tables_[i] = makers_[i](); });
    return tables_[i];
  }

 private:
  Maker makers_[3];
  std::once_flag once_[3];
  Table tables_[3]{};
};

}  // namespace regtune

// Declares the makers `Table fn()` of every compiled target, and lists them for PerTarget.
#if REGTUNE_HAVE_SIMD_TARGETS
#define REGTUNE_DECLARE_MAKERS(Table, fn) \
  namespace scalar { Table fn(); }        \
  namespace avx2 { Table fn(); }          \
  namespace avx512 { Table fn(); }
#define REGTUNE_MAKERS(fn) scalar::fn, avx2::fn, avx512::fn
#else
#define REGTUNE_DECLARE_MAKERS(Table, fn) \
  namespace scalar { Table fn(); }
#define REGTUNE_MAKERS(fn) scalar::fn, scalar::fn, scalar::fn
#endif

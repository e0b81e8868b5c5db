// regtune._core: the native half of regtune. Each register_* adds one area's functions.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <cstdio>
#include <cstring>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common.h"
#include "regtune/kernels.h"

namespace regtune::bind {
void register_random(py::module_& m);
void register_optim(py::module_& m);
void register_dropout(py::module_& m);
void register_augment(py::module_& m);
}

namespace {

regtune::Simd parse_simd(const std::string& name) {
  if (name == "scalar") return regtune::Simd::scalar;
  if (name == "avx2") return regtune::Simd::avx2;
  if (name == "avx512") return regtune::Simd::avx512;
  throw std::invalid_argument("unknown SIMD path '" + name + "'; expected one of scalar, avx2, avx512");
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

namespace py = pybind11;

// Between chunks of a long call (on the thread that made it): run Python's signal handlers, so
// Ctrl-C raises KeyboardInterrupt within a few tens of milliseconds instead of at the end.
void check_interrupt() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

// A thread that could not be started: a RuntimeWarning (an error where warnings are errors).
void warn_runtime(const char* message) {
  py::gil_scoped_acquire gil;
  if (PyErr_WarnEx(PyExc_RuntimeWarning, message, 1) != 0) throw py::error_already_set();
}

}  // namespace

// For threadpoolctl (regtune registers a controller that finds _core by these symbols).
extern "C" __attribute__((visibility("default"))) int regtune_get_num_threads() { return regtune::get_num_threads(); }
extern "C" __attribute__((visibility("default"))) void regtune_set_num_threads(int n) {
  regtune::set_num_threads(std::clamp(n, 1, regtune::kMaxThreads));
}

// 4 dependent adds per iteration: 4 cycles on every x86-64 core (add has 1-cycle latency; the
// loop counter and branch run beside the chain). The best of 5 runs of ~10 ms each.
static double cpu_clock_ghz() {
#if defined(__x86_64__)
  constexpr uint64_t kIters = 10'000'000;
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    uint64_t x = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < kIters; ++i) {
      __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    }
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 4.0 * double(kIters) / ns);
  }
  return best;
#else
  return std::nan("");
#endif
}

// madvise(MADV_HUGEPAGE) on the huge-page-aligned interior of [address, address + nbytes), so
// the first touch of a fresh large buffer maps 2 MiB pages (one fault and one clear each)
// instead of 512 4 KiB ones. Returns the bytes advised: 0 off Linux, where transparent huge
// pages are off ("never") or the kernel refuses, and for a range holding no whole huge page.
// It only sets a flag on the mapping: the contents and the memory's owner are unaffected.
static size_t advise_hugepages(uintptr_t address, size_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  static const uintptr_t huge = [] {
    // C stdio, not iostreams: libstdc++'s filebuf calls fstat64, a GLIBC_2.33 symbol, which would
    // raise the portable wheel's glibc floor (tools/build_wheel.sh checks it).
    auto read_line = [](const char* path, char* buf, int n) {
      std::FILE* f = std::fopen(path, "r");
      const bool ok = f != nullptr && std::fgets(buf, n, f) != nullptr;
      if (f != nullptr) std::fclose(f);
      return ok;
    };
    char line[256];
    if (!read_line("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", line, sizeof line)) return uintptr_t(0);
    const unsigned long long v = std::strtoull(line, nullptr, 10);
    if (v == 0 || (v & (v - 1)) != 0) return uintptr_t(0);  // no THP in this kernel
    if (!read_line("/sys/kernel/mm/transparent_hugepage/enabled", line, sizeof line)) return uintptr_t(0);
    return std::strstr(line, "[never]") != nullptr ? uintptr_t(0) : uintptr_t(v);
  }();
  if (huge == 0 || nbytes > UINTPTR_MAX - address) return 0;
  const uintptr_t lo = (address + huge - 1) & ~(huge - 1), hi = (address + nbytes) & ~(huge - 1);
  if (hi <= lo || madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE) != 0) return 0;
  return size_t(hi - lo);
#else
  (void)address;
  (void)nbytes;
  return 0;
#endif
}

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "regtune's native kernels (private: use the regtune package)";

  // One dispatch table for the process, chosen here at import.
  const char* forced = std::getenv("REGTUNE_SIMD");
  if (forced != nullptr && *forced != '\0') {
    try {
      regtune::select_simd(parse_simd(forced));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(std::string("REGTUNE_SIMD=") + forced + ": " + e.what());
    }
  } else {
    regtune::select_simd(regtune::best_simd());
  }

  m.def("simd", [] { return std::string(regtune::simd_name(regtune::current_simd())); },
        "The SIMD path in use: 'scalar', 'avx2' or 'avx512'.");
  m.def("select_simd", [](const std::string& name) { regtune::select_simd(parse_simd(name)); }, py::arg("name"),
        "Switch the SIMD path for the whole process (tests use it; REGTUNE_SIMD is the public knob).");
  m.def("simd_supported", [](const std::string& name) { return regtune::simd_supported(parse_simd(name)); },
        py::arg("name"));
  regtune::set_interrupt_hook(&check_interrupt);
  regtune::set_warning_hook(&warn_runtime);

  m.def("get_num_threads", &regtune::get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1 || n > regtune::kMaxThreads) {
      throw py::value_error("n must be between 1 and " + std::to_string(regtune::kMaxThreads) + ", got " +
                            std::to_string(n));
    }
    regtune::set_num_threads(n);
  }, py::arg("n"));
  m.def("default_num_threads", &regtune::default_num_threads);
  m.def("set_default_num_threads", [](int n) {
    if (n < 1 || n > regtune::kMaxThreads) throw py::value_error("n out of range");
    regtune::set_default_num_threads(n);
  }, py::arg("n"));
  m.def("spin_us", &regtune::spin_us);
  m.def("set_spin_us", [](int us) {
    if (us < 0 || us > regtune::kActiveSpinUs) throw py::value_error("us out of range");
    regtune::set_spin_us(us);
  }, py::arg("us"));
  m.def("serial_threshold", &regtune::serial_threshold);
  m.def("set_serial_threshold", [](size_t n) { regtune::set_serial_threshold(n); }, py::arg("n"));
  m.def("set_openmp_parallel", [](uintptr_t address) {
    regtune::set_openmp_parallel(reinterpret_cast<regtune::OpenmpParallel>(address));
  }, py::arg("address"),
        "The address of the OpenMP runtime's GOMP_parallel that torch runs on (0: none). Private: "
        "regtune.torch sets it from the loaded runtime; any other address crashes the process.");
  m.def("use_openmp_team", &regtune::use_openmp_team, py::arg("on"),
        "Whether this thread's calls run on that runtime's team; returns the previous setting.");
  m.attr("MAX_THREADS") = regtune::kMaxThreads;
  m.attr("ACTIVE_SPIN_US") = regtune::kActiveSpinUs;
  m.def("build_info", [] {
    py::dict d;
    d["compiler"] = compiler();
    d["thread_pool"] = regtune::threads_enabled();
    py::list compiled, supported;
    for (auto s : {regtune::Simd::scalar, regtune::Simd::avx2, regtune::Simd::avx512}) {
      if (regtune::simd_compiled(s)) compiled.append(regtune::simd_name(s));
      if (regtune::simd_supported(s)) supported.append(regtune::simd_name(s));
    }
    d["simd_compiled"] = compiled;
    d["simd_supported"] = supported;
    d["serial_threshold"] = regtune::serial_threshold();
    return d;
  });

  m.def("cpu_clock_ghz", &cpu_clock_ghz,
        "The core clock of the calling thread in GHz, from the time a chain of dependent integer adds "
        "(one cycle each) takes; NaN off x86-64. For the benchmarks' cycles-per-element figures on "
        "machines without performance counters (VMs).");

  m.def("advise_hugepages", &advise_hugepages, py::arg("address"), py::arg("nbytes"),
        "madvise(MADV_HUGEPAGE) on the whole huge pages inside [address, address + nbytes); the bytes "
        "advised (0 where transparent huge pages are unavailable). For fresh, untouched buffers.");

  regtune::bind::register_random(m);
  regtune::bind::register_optim(m);
  regtune::bind::register_dropout(m);
  regtune::bind::register_augment(m);
}

// regtune's thread pool: the API every threaded driver (random, dropout, optim, augment) uses.
// See threading.cpp for the pool itself and why it is not OpenMP.
#pragma once

#include <cstddef>

namespace regtune {

// regtune's own pool (see threading.cpp for why not OpenMP). Built without it (REGTUNE_THREADS=0)
// everything runs on the calling thread.
constexpr int kMaxThreads = 1024;      // set_num_threads accepts 1 .. kMaxThreads
constexpr int kDefaultSpinUs = 50;     // an idle worker spins this long before it sleeps
constexpr int kActiveSpinUs = 100000;  // OMP_WAIT_POLICY=active, and the most REGTUNE_SPIN_US may ask
bool threads_enabled();
int get_num_threads();
void set_num_threads(int n);  // 1 <= n <= kMaxThreads, else std::invalid_argument
int default_num_threads();    // the CPUs this process may run on, or set_default_num_threads
void set_default_num_threads(int n);
int spin_us();                // REGTUNE_SPIN_US, else from OMP_WAIT_POLICY, else kDefaultSpinUs
void set_spin_us(int us);
// Arrays below this many elements (256 KiB of float32; 20-70 us of work on one core) stay on the
// calling thread. Up to 2**20 elements a call only uses workers that are still awake after a
// recent call (threading.cpp): in bench/mixed_loop.py, waking a sleeping one right after NumPy's
// BLAS has run cost more than it saved. REGTUNE_SERIAL_THRESHOLD overrides it.
constexpr size_t kSerialThreshold = size_t(1) << 16;
size_t serial_threshold();
void set_serial_threshold(size_t n);
// Hooks the Python bindings install. The interrupt hook runs on the calling thread of an
// interruptible call, between its chunks, about every 20 ms; it throws to stop the call (the
// remaining chunks are skipped and parallel_for rethrows). The warning hook reports a thread that
// could not be started (it may throw too, before any work is done).
void set_interrupt_hook(void (*hook)());
void set_warning_hook(void (*hook)(const char* message));
// Another runtime's team, for the calls of the threads that ask for it: an OpenMP runtime's
// GOMP_parallel (libgomp's entry point; LLVM's and Intel's runtimes export it too), the runtime
// torch runs its own operators on. Right after a torch operator its threads are awake (they spin),
// and this pool's workers would compete with them for the same cores; a call on that team runs
// on them instead, with the same chunks (the same values). set_openmp_parallel(nullptr) drops it;
// a forked child drops it too (that runtime's threads are not there). use_openmp_team(true)
// makes this thread's calls use it while it is set, and returns the previous setting.
using OpenmpParallel = void (*)(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags);
void set_openmp_parallel(OpenmpParallel fn);
bool use_openmp_team(bool on);
// Runs body(begin, end) over [0, n) in chunks whose boundaries are multiples of `grain` (64 bytes
// of output, or a reduction block), so no two threads write one cache line; which thread runs a
// chunk must not change a value. Interruptible calls may stop early by rethrowing the interrupt
// hook's exception: outputs then hold some chunks written and the rest untouched.
void parallel_for(size_t n, size_t grain, void (*body)(void* ctx, size_t begin, size_t end), void* ctx,
                  bool interruptible = false);

}  // namespace regtune

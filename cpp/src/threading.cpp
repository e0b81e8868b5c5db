// regtune's thread pool: fixed-size chunks taken dynamically, a short spin and then a sleep.
//
// Why not OpenMP (the design's first choice, used until 0.1): libgomp reads its wait policy once,
// from the environment, when it is loaded, so a library cannot make its idle threads stop
// spinning without changing every other libgomp user in the process; its threads do not survive
// fork (a child's first parallel region waits forever for threads that are not there); it aborts
// the process when a thread cannot be created, and crashed outright on absurd thread counts. In
// the mixed loop of bench/mixed_loop.py its idle threads spun on the cores NumPy's BLAS needed and
// made the loop 12x slower than one thread. This pool owns all of those decisions:
//
//   - a call is cut into chunks of whole grains (64 bytes of output or a reduction block), sized
//     from the element count alone; the caller and the workers take chunks from one counter, so a
//     preempted thread holds back one chunk, not a fixed half of the call. Values depend on element
//     indices only, so which thread takes a chunk changes nothing;
//   - an idle worker spins for at most the policy's spin time (adaptively less when spinning did
//     not pay), then sleeps on a condition variable (a futex on Linux);
//   - calls below the serial threshold, calls made while another call owns the pool, and calls
//     from inside a chunk run on the calling thread; calls below kWakeThreshold wake sleeping
//     workers only when calls come back to back (so the workers stay awake), and otherwise use
//     only workers that are still spinning after a recent call;
//   - after fork the child abandons the parent's pool (its threads are gone) and starts its own on
//     its next call;
//   - a thread that cannot be started is reported once through the warning hook and the pool
//     carries on with the threads it has (serial if none);
//   - interruptible calls ask the interrupt hook, between chunks of the calling thread, whether
//     to stop (Ctrl-C); remaining chunks are skipped and the hook's exception is rethrown.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "regtune/threads.h"

#if REGTUNE_THREADS
#include <pthread.h>
#include <sched.h>
#endif

namespace regtune {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_threads{0};          // 0: the default (g_default_threads); else set_num_threads
std::atomic<int> g_default_threads{0};  // 0: not yet computed
std::atomic<int> g_spin_us{-1};         // -1: not yet read from the environment
std::atomic<size_t> g_serial_threshold{kSerialThreshold};
std::atomic<void (*)()> g_interrupt_hook{nullptr};
std::atomic<void (*)(const char*)> g_warning_hook{nullptr};
thread_local bool t_in_chunk = false;  // nested calls (a chunk that calls parallel_for) run serially
std::atomic<OpenmpParallel> g_openmp_parallel{nullptr};
thread_local bool t_openmp_team = false;  // this thread's calls run on g_openmp_parallel's team

constexpr auto kInterruptEvery = std::chrono::milliseconds(20);
constexpr size_t kMinChunk = size_t(1) << 14;  // elements: below this the hand-off costs more than it saves
constexpr size_t kMaxChunk = size_t(1) << 18;  // elements: a preempted thread holds back at most ~1 ms
constexpr size_t kChunksPerThread = 16;
// Calls of at least this many elements (0.5-1 ms of work on one core) wake sleeping workers;
// smaller ones (down to the serial threshold) only use workers that are still spinning.
constexpr size_t kWakeThreshold = size_t(1) << 20;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#else
  std::this_thread::yield();
#endif
}

int parse_int_env(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (end == v || x < 0 || x > 1000000) return fallback;
  return int(x);
}

// Spin time of an idle worker, from REGTUNE_SPIN_US, else OMP_WAIT_POLICY (passive: 0, active:
// kActiveSpinUs), else kDefaultSpinUs.
int policy_spin_us() {
  int s = g_spin_us.load(std::memory_order_relaxed);
  if (s >= 0) return s;
  s = parse_int_env("REGTUNE_SPIN_US", -1);
  if (s < 0) {
    const char* w = std::getenv("OMP_WAIT_POLICY");
    s = kDefaultSpinUs;
    if (w != nullptr && (std::strcmp(w, "passive") == 0 || std::strcmp(w, "PASSIVE") == 0)) s = 0;
    if (w != nullptr && (std::strcmp(w, "active") == 0 || std::strcmp(w, "ACTIVE") == 0)) s = kActiveSpinUs;
  }
  s = std::min(s, kActiveSpinUs);
  int expected = -1;
  g_spin_us.compare_exchange_strong(expected, s);
  return g_spin_us.load(std::memory_order_relaxed);
}

struct Job {
  void (*body)(void*, size_t, size_t);
  void* ctx;
  size_t n, chunk, nchunks;
  std::atomic<size_t> next{0};
  std::atomic<bool> cancelled{false};
  std::mutex error_mutex;
  std::exception_ptr error;  // the first exception a chunk threw (kernels do not throw; a guard)

  // Called from a catch block: keeps the first exception and skips the chunks not yet started.
  void fail() {
    std::lock_guard<std::mutex> lk(error_mutex);
    if (!error) error = std::current_exception();
    cancelled.store(true, std::memory_order_relaxed);
  }
  void run_chunk(size_t c) {
    const size_t b = c * chunk, e = std::min(n, b + chunk);
    try {
      body(ctx, b, e);
    } catch (...) {
      fail();
    }
  }
  // Takes and runs chunks until none is left (or the job is cancelled); with a hook, asks it
  // between chunks, at most every kInterruptEvery, whether to stop.
  void take(void (*hook)()) {
    const bool outer = t_in_chunk;
    t_in_chunk = true;
    auto last = Clock::now();
    while (!cancelled.load(std::memory_order_relaxed)) {
      const size_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= nchunks) break;
      run_chunk(c);
      if (hook == nullptr) continue;
      const auto now = Clock::now();
      if (now - last < kInterruptEvery) continue;
      last = now;
      try {
        hook();
      } catch (...) {
        fail();
      }
    }
    t_in_chunk = outer;
  }
  // A worker's share.
  void help() { take(nullptr); }
  // The calling thread's share: asks the interrupt hook when the call is interruptible (a
  // nested call, from inside a chunk, never asks: it may be on a worker thread).
  void lead(bool interruptible) {
    take(interruptible && !t_in_chunk ? g_interrupt_hook.load(std::memory_order_acquire) : nullptr);
  }
};

void warn(const std::string& msg) {
  if (auto hook = g_warning_hook.load(std::memory_order_acquire)) hook(msg.c_str());
}

#if REGTUNE_THREADS

class Pool {
 public:
  std::mutex owner;  // held by the call that uses the workers; others run on their own thread

  // Runs the job on the calling thread and up to `helpers` workers; `owner` is held.
  void run(Job& j, int helpers, bool interruptible) {
    bool wake;
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &j;
      wanted_ = helpers;
      gen_.fetch_add(1, std::memory_order_release);
      wake = sleepers_.load(std::memory_order_relaxed) > 0;
    }
    if (wake) work_cv_.notify_all();
    j.lead(interruptible);
    std::unique_lock<std::mutex> lk(m_);
    job_ = nullptr;  // no worker joins from here on
    wanted_ = 0;
    if (active_.load(std::memory_order_relaxed) > 0) {
      // The workers still inside hold a chunk each: a short spin, then sleep until they leave.
      lk.unlock();
      const auto until = Clock::now() + std::chrono::microseconds(spin_us_.load(std::memory_order_relaxed) + 20);
      while (active_.load(std::memory_order_acquire) > 0 && Clock::now() < until) {
        for (int k = 0; k < 32; ++k) cpu_relax();
      }
      lk.lock();
      caller_waiting_ = true;
      done_cv_.wait(lk, [&] { return active_.load(std::memory_order_relaxed) == 0; });
      caller_waiting_ = false;
    }
  }

  // Starts or stops workers so that `count` exist (fewer if threads cannot be started).
  // `owner` is held. Returns the number of workers.
  int resize(int count, int spin_us) {
    spin_us_.store(spin_us, std::memory_order_relaxed);
    while (int(workers_.size()) > count) {
      {
        std::lock_guard<std::mutex> lk(m_);
        workers_.back()->quit = true;
        work_cv_.notify_all();
      }
      workers_.back()->thread.join();
      workers_.pop_back();
    }
    if (int(workers_.size()) < count && count <= start_limit_) {
      while (int(workers_.size()) < count) {
        auto w = std::make_unique<Worker>();
        try {
          w->thread = std::thread(&Pool::work, this, w.get());
        } catch (const std::system_error& e) {
          start_limit_ = int(workers_.size());
          warn("regtune could not start thread " + std::to_string(workers_.size() + 2) + " of " +
               std::to_string(count + 1) + " (" + e.what() + "); its kernels use " + std::to_string(start_limit_ + 1) +
               " thread(s) in this process from now on");
          break;
        }
        workers_.push_back(std::move(w));
      }
    }
    return int(workers_.size());
  }

  int start_limit() const { return start_limit_; }
  // Every worker sleeps (none spun since the last call): waking one costs a futex wake and, on
  // a VM whose other CPU is idle, tens of microseconds before it runs. `owner` is held.
  bool all_asleep() const { return sleepers_.load(std::memory_order_relaxed) >= int(workers_.size()); }

  // The pace of calls that reach the pool (`owner` held): an average of the gaps between the end
  // of one and the start of the next. Calls that come back to back (an average gap within the
  // spin time) keep workers awake, so waking them once pays; calls that alternate with other
  // work (NumPy's BLAS between them) would wake them for nothing.
  void note_start(Clock::time_point now) {
    if (last_end_ != Clock::time_point{}) {
      const double gap = std::chrono::duration<double, std::micro>(now - last_end_).count();
      gap_us_ = 0.75 * gap_us_ + 0.25 * std::min(gap, 1e6);
    }
  }
  void note_end(Clock::time_point now) { last_end_ = now; }
  bool back_to_back() const { return gap_us_ <= double(std::max(spin_us_.load(std::memory_order_relaxed), 10)); }

 private:
  struct Worker {
    std::thread thread;
    bool quit = false;  // guarded by m_
    int spin_us = -1;   // adaptive: halves while calls come further apart than the limit
  };

  void work(Worker* self) {
    uint64_t seen = gen_.load(std::memory_order_acquire);
    for (;;) {
      const int limit = spin_us_.load(std::memory_order_relaxed);
      if (self->spin_us < 0 || self->spin_us > limit) self->spin_us = limit;
      const auto idle_since = Clock::now();
      if (self->spin_us > 0) {
        const auto until = idle_since + std::chrono::microseconds(self->spin_us);
        do {
          for (int k = 0; k < 64; ++k) cpu_relax();
          if (gen_.load(std::memory_order_acquire) != seen) break;
        } while (Clock::now() < until);
      }
      std::unique_lock<std::mutex> lk(m_);
      if (gen_.load(std::memory_order_relaxed) == seen && !self->quit) {
        sleepers_.fetch_add(1, std::memory_order_relaxed);
        work_cv_.wait(lk, [&] { return gen_.load(std::memory_order_relaxed) != seen || self->quit; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      // Spin the whole limit next time when the next call came within it; else half as long.
      self->spin_us = Clock::now() - idle_since <= std::chrono::microseconds(limit) ? limit : self->spin_us / 2;
      if (self->quit) return;
      seen = gen_.load(std::memory_order_relaxed);
      if (job_ == nullptr || wanted_ <= 0) continue;
      Job* j = job_;
      --wanted_;
      active_.fetch_add(1, std::memory_order_relaxed);
      lk.unlock();
      j->help();
      lk.lock();
      if (active_.fetch_sub(1, std::memory_order_release) == 1 && caller_waiting_) done_cv_.notify_one();
    }
  }

  std::mutex m_;
  std::condition_variable work_cv_, done_cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> active_{0};  // workers inside the current job (changed with m_ held)
  Job* job_ = nullptr;          // guarded by m_
  int wanted_ = 0;              // guarded by m_: workers that may still join job_
  std::atomic<int> sleepers_{0};  // workers waiting on work_cv_ (changed with m_ held)
  bool caller_waiting_ = false;  // guarded by m_
  std::atomic<int> spin_us_{0};  // the policy's spin limit (set with `owner` held)
  int start_limit_ = kMaxThreads;  // with `owner` held: no more workers are tried past this
  Clock::time_point last_end_{};   // with `owner` held
  double gap_us_ = 1e6;            // with `owner` held
  std::vector<std::unique_ptr<Worker>> workers_;  // with `owner` held
};

// The process's pool, made on first use. It is never destroyed: at exit its workers sleep, and a
// forked child drops the parent's (its threads do not exist there) and makes its own.
std::atomic<Pool*> g_pool{nullptr};

void after_fork_in_child() {
  g_pool.store(nullptr, std::memory_order_relaxed);
  g_openmp_parallel.store(nullptr, std::memory_order_relaxed);
}

void handle_fork() {
  static std::once_flag atfork_once;
  std::call_once(atfork_once, [] { pthread_atfork(nullptr, nullptr, after_fork_in_child); });
}

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  handle_fork();
  auto* fresh = new Pool;
  if (!g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) {
    delete fresh;  // another thread made one first (no thread was started in ours)
    return *p;
  }
  return *fresh;
}

int cpus_available() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

#else  // !REGTUNE_THREADS

int cpus_available() { return 1; }

#endif

}  // namespace

bool threads_enabled() { return REGTUNE_THREADS != 0; }

int default_num_threads() {
  int n = g_default_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = std::min(cpus_available(), kMaxThreads);
    g_default_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_default_num_threads(int n) {
  if (n < 1 || n > kMaxThreads) throw std::invalid_argument("default thread count out of range");
  g_default_threads.store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  // A serial build keeps what set_num_threads was told (so the setting round-trips, as with
  // threadpoolctl) but defaults to 1 and runs every kernel on the calling thread.
  const int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  return threads_enabled() ? default_num_threads() : 1;
}

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads) {
    throw std::invalid_argument("n must be between 1 and " + std::to_string(kMaxThreads) + ", got " + std::to_string(n));
  }
  g_threads.store(n, std::memory_order_relaxed);
}

int spin_us() { return policy_spin_us(); }
void set_spin_us(int us) {
  if (us < 0 || us > kActiveSpinUs) throw std::invalid_argument("spin_us out of range");
  g_spin_us.store(us, std::memory_order_relaxed);
}
size_t serial_threshold() { return g_serial_threshold.load(std::memory_order_relaxed); }
void set_serial_threshold(size_t n) { g_serial_threshold.store(std::max<size_t>(n, 1), std::memory_order_relaxed); }

void set_openmp_parallel(OpenmpParallel fn) {
#if REGTUNE_THREADS
  handle_fork();
  g_openmp_parallel.store(fn, std::memory_order_release);
#else
  (void)fn;  // a serial build runs every call on the calling thread
#endif
}

bool use_openmp_team(bool on) {
  const bool was = t_openmp_team;
  t_openmp_team = on;
  return was;
}

void set_interrupt_hook(void (*hook)()) { g_interrupt_hook.store(hook, std::memory_order_release); }
void set_warning_hook(void (*hook)(const char*)) { g_warning_hook.store(hook, std::memory_order_release); }

void parallel_for(size_t n, size_t grain, void (*body)(void*, size_t, size_t), void* ctx, bool interruptible) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  const int threads = get_num_threads();
  if (n < serial_threshold() || (threads <= 1 && !interruptible)) {
    body(ctx, 0, n);
    return;
  }
  // Chunks of whole grains, sized from n and the thread count (never from values).
  size_t chunk = n / (size_t(threads) * kChunksPerThread);
  chunk = std::clamp(chunk, kMinChunk, kMaxChunk);
  chunk = (chunk + grain - 1) / grain * grain;
  Job job;
  job.body = body;
  job.ctx = ctx;
  job.n = n;
  job.chunk = chunk;
  job.nchunks = (n + chunk - 1) / chunk;
#if REGTUNE_THREADS
  const int helpers = int(std::min<size_t>(size_t(threads - 1), job.nchunks - 1));
  OpenmpParallel team = t_openmp_team ? g_openmp_parallel.load(std::memory_order_acquire) : nullptr;
  if (helpers > 0 && !t_in_chunk && team != nullptr) {
    // Every thread of the team (as many as this call's thread count, so that the runtime keeps
    // the team it has when torch uses as many) takes chunks; the calling thread is its master.
    struct Team {
      Job* job;
      pthread_t lead;
      bool interruptible;
    } t{&job, pthread_self(), interruptible};
    team([](void* c) {
      auto* t = static_cast<Team*>(c);
      if (pthread_equal(pthread_self(), t->lead)) {
        t->job->lead(t->interruptible);
      } else {
        t->job->help();
      }
    }, &t, unsigned(threads), 0);
    if (job.error) std::rethrow_exception(job.error);
    return;
  }
  if (helpers > 0 && !t_in_chunk) {
    Pool& p = pool();
    std::unique_lock<std::mutex> own(p.owner, std::try_to_lock);
    if (own.owns_lock()) {
      // Keep threads - 1 workers (a later call with fewer threads stops the extra ones).
      const int have = p.resize(threads - 1, policy_spin_us());
      p.note_start(Clock::now());
      struct NoteEnd {
        Pool& p;
        ~NoteEnd() { p.note_end(Clock::now()); }
      } note_end{p};
      // Small calls use workers that are awake, or wake them when calls come back to back; in a
      // loop that alternates with NumPy's BLAS they stay on this thread (a sleeping worker would
      // wake too late to help, and then spin on the core the BLAS needs).
      if (have > 0 && (n >= kWakeThreshold || !p.all_asleep() || p.back_to_back())) {
        p.run(job, std::min(helpers, have), interruptible);
      } else {
        job.lead(interruptible);
      }
      if (job.error) std::rethrow_exception(job.error);
      return;
    }
  }
#endif
  job.lead(interruptible);  // on the calling thread alone
  if (job.error) std::rethrow_exception(job.error);
}

void parallel_copy(void* dst, const void* src, size_t nbytes) {
  struct Ctx { char* d; const char* s; } ctx{static_cast<char*>(dst), static_cast<const char*>(src)};
  parallel_for(nbytes, 4096, [](void* c, size_t b, size_t e) {
    auto* x = static_cast<Ctx*>(c);
    std::memcpy(x->d + b, x->s + b, e - b);
  }, &ctx);
}

template <typename T>
void parallel_fill(T* out, size_t count, T value) {
  struct Ctx { T* o; T v; } ctx{out, value};
  parallel_for(count, 64 / sizeof(T), [](void* c, size_t b, size_t e) {
    auto* x = static_cast<Ctx*>(c);
    std::fill(x->o + b, x->o + e, x->v);
  }, &ctx, true);
}
template void parallel_fill<float>(float*, size_t, float);
template void parallel_fill<double>(double*, size_t, double);
template void parallel_fill<uint16_t>(uint16_t*, size_t, uint16_t);

}  // namespace regtune

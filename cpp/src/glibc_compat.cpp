// The portable wheel's glibc floor (REGTUNE_GLIBC_COMPAT, tools/build_wheel.sh): the wheel is
// built on a glibc >= 2.34 system, where pthread_* moved from libpthread into libc under a new
// symbol version; libstdc++ (linked statically, so the wheel needs no newer libstdc++ than the
// system's either) also reads __libc_single_threaded (glibc 2.32) and its random.o calls
// arc4random (2.36) and getentropy (2.25). Every reference to those is redirected (ld --wrap)
// to the functions below, which call the versions that every glibc since 2.2.5 exports (the
// pthread ones in libpthread.so.0 before 2.34, linked explicitly), so the extension's
// newest glibc symbol is GLIBC_2.17 (clock_gettime) and auditwheel tags it manylinux_2_17
// (manylinux2014).
// Nothing here changes behaviour: the old-version pthread functions are the same code under
// their old names, and regtune never calls std::random_device (arc4random is never reached).
#if defined(REGTUNE_GLIBC_COMPAT) && defined(__linux__) && defined(__x86_64__)

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" {

// libstdc++'s __gnu_cxx::__is_single_threaded() reads this: false makes it always use atomic
// reference counts, correct in any process (hidden: it stays inside the extension).
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;

// regtune_compat_<name> is bound to <name>@GLIBC_2.2.5 by .symver (this file is compiled without
// LTO, which would drop the directive).
#define REGTUNE_COMPAT(ret, name, params, args)                                         \
  ret regtune_compat_##name params;                                                     \
  __asm__(".symver regtune_compat_" #name ", " #name "@GLIBC_2.2.5");                   \
  __attribute__((visibility("hidden"))) ret __wrap_##name params { return regtune_compat_##name args; }

REGTUNE_COMPAT(int, pthread_create, (pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg), (t, a, f, arg))
REGTUNE_COMPAT(int, pthread_join, (pthread_t t, void** r), (t, r))
REGTUNE_COMPAT(int, pthread_detach, (pthread_t t), (t))
REGTUNE_COMPAT(int, pthread_once, (pthread_once_t* o, void (*f)(void)), (o, f))
REGTUNE_COMPAT(int, pthread_key_create, (pthread_key_t* k, void (*d)(void*)), (k, d))
REGTUNE_COMPAT(int, __pthread_key_create, (pthread_key_t* k, void (*d)(void*)), (k, d))
REGTUNE_COMPAT(int, pthread_key_delete, (pthread_key_t k), (k))
REGTUNE_COMPAT(void*, pthread_getspecific, (pthread_key_t k), (k))
REGTUNE_COMPAT(int, pthread_setspecific, (pthread_key_t k, const void* v), (k, v))
REGTUNE_COMPAT(int, pthread_mutex_trylock, (pthread_mutex_t* m), (m))
#undef REGTUNE_COMPAT

// arc4random (glibc 2.36), from the kernel's getrandom system call (Linux 3.17; glibc's own
// wrapper is 2.25, so the call goes through syscall).
__attribute__((visibility("hidden"))) unsigned int __wrap_arc4random(void) {
  unsigned int r = 0;
  while (syscall(SYS_getrandom, &r, sizeof r, 0) != static_cast<long>(sizeof r)) {
  }
  return r;
}

// getentropy (glibc 2.25; libstdc++'s random_device), likewise: at most 256 bytes, all or -1.
__attribute__((visibility("hidden"))) int __wrap_getentropy(void* buf, size_t len) {
  if (len > 256) {
    errno = EIO;
    return -1;
  }
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    const long n = syscall(SYS_getrandom, p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= size_t(n);
  }
  return 0;
}

}  // extern "C"

#endif

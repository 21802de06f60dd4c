/*
 * os.c: pages from the kernel.  The only file that calls mmap and friends.
 */
#include "os.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

static size_t page_size_cached;
static _Atomic(long) fail_countdown = -1;
static _Atomic(size_t) mapped_bytes;
static _Atomic(size_t) purged_bytes;
static _Atomic(os_vacate_hook_fn) vacate_hook;
static _Atomic(bool) hints_disabled;

size_t os_page_size(void) {
  if (page_size_cached == 0) {
    unsigned long ps = getauxval(AT_PAGESZ);
    page_size_cached = ps ? (size_t)ps : 4096;
  }
  return page_size_cached;
}

void os_fail_after(long successes) {
  atomic_store(&fail_countdown, successes);
}

/* True when an injected failure is due. */
static bool injected_failure(void) {
  long left = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
  while (left >= 0) {
    if (left == 0) return true;
    if (atomic_compare_exchange_weak(&fail_countdown, &left, left - 1)) return false;
  }
  return false;
}

void os_set_vacate_hook(os_vacate_hook_fn hook) { atomic_store(&vacate_hook, hook); }

void os_disable_hints(bool disable) { atomic_store(&hints_disabled, disable); }

static void vacated(void *addr, size_t size) {
  os_vacate_hook_fn hook = atomic_load_explicit(&vacate_hook, memory_order_relaxed);
  if (__builtin_expect(hook != NULL, 0)) hook(addr, size);
}

size_t os_purged_bytes(void) {
  return atomic_load_explicit(&purged_bytes, memory_order_relaxed);
}

size_t os_mapped_bytes(void) {
  return atomic_load_explicit(&mapped_bytes, memory_order_relaxed);
}

/* Every mapping is accounted (no MAP_NORESERVE): the kernel's overcommit
 * policy judges each request, so one the machine could never back fails at
 * once with ENOMEM, as glibc's does, instead of succeeding and killing the
 * process when touched.  `hint`: where to place it, or NULL. */
static void *map_anonymous(void *hint, size_t size) {
  void *p = mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* Aligned reservations are first tried at a hinted address in an area of
 * the address space the kernel leaves alone by default (it maps downward
 * from below the stack), so most take one mmap instead of an over-sized
 * mmap plus two trimming munmaps.  2 TiB, as other allocators use. */
#define HINT_AREA_START ((uintptr_t)2 << 40)
#define HINT_AREA_END ((uintptr_t)4 << 40)
static _Atomic(uintptr_t) next_hint = HINT_AREA_START;

static void *map_at_hint(size_t size, size_t alignment) {
  if (atomic_load_explicit(&hints_disabled, memory_order_relaxed)) return NULL;
  uintptr_t hint = atomic_load_explicit(&next_hint, memory_order_relaxed);
  uintptr_t aligned, end;
  do {
    aligned = (hint + alignment - 1) & ~(uintptr_t)(alignment - 1);
    end = aligned + size;
    if (end > HINT_AREA_END || end < aligned) { /* wrap around: freed space is reused */
      aligned = (HINT_AREA_START + alignment - 1) & ~(uintptr_t)(alignment - 1);
      end = aligned + size;
      if (end > HINT_AREA_END || end < aligned) return NULL;
    }
  } while (!atomic_compare_exchange_weak_explicit(&next_hint, &hint, end, memory_order_relaxed,
                                                  memory_order_relaxed));
  void *p = map_anonymous((void *)aligned, size);
  if (p == NULL) return NULL;
  if (p != (void *)aligned) { /* the kernel placed it elsewhere */
    munmap(p, size);
    return NULL;
  }
  return p;
}

void *os_reserve_aligned(size_t size, size_t alignment) {
  int saved = errno;
  if (injected_failure() || size == 0 || size + alignment < size) {
    errno = ENOMEM;
    return NULL;
  }
  uint8_t *p = alignment > os_page_size() ? map_at_hint(size, alignment) : map_anonymous(NULL, size);
  if (p == NULL) {
    /* Over-reserve and trim both ends. */
    size_t over = size + alignment;
    p = map_anonymous(NULL, over);
    if (p == NULL) {
      errno = ENOMEM;
      return NULL;
    }
    uintptr_t aligned = ((uintptr_t)p + alignment - 1) & ~(uintptr_t)(alignment - 1);
    size_t head = aligned - (uintptr_t)p;
    size_t tail = over - head - size;
    if (head) munmap(p, head);
    if (tail) munmap((uint8_t *)aligned + size, tail);
    p = (uint8_t *)aligned;
  }
  if ((uintptr_t)p + size > ((uintptr_t)1 << OS_ADDRESS_BITS)) { /* beyond every address map */
    munmap(p, size);
    errno = ENOMEM;
    return NULL;
  }
  atomic_fetch_add_explicit(&mapped_bytes, size, memory_order_relaxed);
  errno = saved;
  return p;
}

void os_release(void *addr, size_t size) {
  int saved = errno;
  if (munmap(addr, size) == 0) {
    atomic_fetch_sub_explicit(&mapped_bytes, size, memory_order_relaxed);
    vacated(addr, size);
  }
  errno = saved;
}

void os_purge(void *addr, size_t size) {
  int saved = errno;
  if (madvise(addr, size, MADV_DONTNEED) == 0)
    atomic_fetch_add_explicit(&purged_bytes, size, memory_order_relaxed);
  errno = saved;
}

/* ThreadSanitizer follows mmap and munmap but not mremap: a mapping grown
 * in place over a range another thread's block left (moved away by
 * mremap) would still carry that thread's accesses in its shadow, and the
 * new owner's writes would be reported as races (its annotation for new
 * memory did not clear them).  Its builds never grow in place: blocks move
 * to fresh mappings, which it does follow. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OS_GROW_IN_PLACE 0
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define OS_GROW_IN_PLACE 0
#endif
#ifndef OS_GROW_IN_PLACE
#define OS_GROW_IN_PLACE 1
#endif

bool os_remap_in_place(void *addr, size_t old_size, size_t new_size) {
  int saved = errno;
  if (new_size > old_size && (!OS_GROW_IN_PLACE || injected_failure())) return false;
  void *p = mremap(addr, old_size, new_size, 0);
  errno = saved;
  if (p == MAP_FAILED) return false;
  if (new_size >= old_size)
    atomic_fetch_add_explicit(&mapped_bytes, new_size - old_size, memory_order_relaxed);
  else
    atomic_fetch_sub_explicit(&mapped_bytes, old_size - new_size, memory_order_relaxed);
  return true;
}

void *os_remap_aligned(void *addr, size_t old_size, size_t new_size, size_t alignment) {
  /* Reserve the aligned target first, then move the pages over it. */
  uint8_t *target = os_reserve_aligned(new_size, alignment);
  if (target == NULL) return NULL;
  os_move_pages(addr, old_size < new_size ? old_size : new_size, target);
  if (old_size > new_size) os_release((uint8_t *)addr + new_size, old_size - new_size);
  return target;
}

/* Kernels before 6.17 move pages one mapping (VMA) at a time: a range made
 * of several, as pieces moved side by side are, fails with EFAULT and is
 * halved until each part lies in one.  Where the kernel refuses for another reason
 * (ENOMEM: too many mappings) the bytes are copied instead. */
static void move_range(uint8_t *from, size_t size, uint8_t *to) {
  if (mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to) != MAP_FAILED) return;
  size_t page = os_page_size();
  if (errno == EFAULT && size > page) {
    size_t half = (size / 2) & ~(page - 1);
    move_range(from, half, to);
    move_range(from + half, size - half, to + half);
    return;
  }
  memcpy(to, from, size);
  munmap(from, size);
}

void os_move_pages(void *from, size_t size, void *to) {
  int saved = errno;
  move_range(from, size, to);
  /* `to` was already counted: only the vacated range leaves the total. */
  atomic_fetch_sub_explicit(&mapped_bytes, size, memory_order_relaxed);
  vacated(from, size);
  errno = saved;
}

/* splitmix64's output function (Steele, Lea and Flood, "Fast splittable
 * pseudorandom number generators", 2014): the fallback's mixer. */
static uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void os_random_fill(void *buf, size_t len) {
  int saved = errno;
  uint8_t *out = buf;
  while (len > 0) {
    /* GRND_NONBLOCK: never wait for the pool at early boot; fall back. */
    long n = syscall(SYS_getrandom, out, len, GRND_NONBLOCK);
    if (n > 0) {
      out += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  if (len > 0) {
    static _Atomic(uint64_t) counter;
    uint64_t seed[2] = {0, 0};
    const void *at_random = (const void *)getauxval(AT_RANDOM);
    if (at_random != NULL) memcpy(seed, at_random, sizeof seed);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (; len > 0; out++, len--) {
      uint64_t c = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
      *out = (uint8_t)mix64(seed[0] ^ mix64(seed[1] + c) ^ (uint64_t)now.tv_nsec);
    }
  }
  errno = saved;
}

void os_write_all(int fd, const char *buf, size_t len) {
  int saved = errno;
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    buf += n;
    len -= (size_t)n;
  }
  errno = saved;
}

/* ---- barriers on every thread -------------------------------------------- */

/* linux/membarrier.h's commands, spelt out: the header is not everywhere
 * the C library's headers are. */
#define OS_MEMBARRIER_CMD_PRIVATE_EXPEDITED (1 << 3)
#define OS_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (1 << 4)

static bool membarrier_command(int command) {
#ifdef SYS_membarrier
  int saved = errno;
  bool ok = syscall(SYS_membarrier, command, 0, 0) == 0;
  errno = saved;
  return ok;
#else
  (void)command;
  return false;
#endif
}

bool os_barrier_register(void) { return membarrier_command(OS_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED); }

bool os_barrier_all_threads(void) { return membarrier_command(OS_MEMBARRIER_CMD_PRIVATE_EXPEDITED); }

/* ---- sleeping on a word ---------------------------------------------------- */

void os_wait_while_equal(const _Atomic(uint32_t) *addr, uint32_t expected) {
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
  errno = saved;
}

void os_wake_all(const _Atomic(uint32_t) *addr) {
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
  errno = saved;
}

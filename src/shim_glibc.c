/*
 * shim_glibc.c: the exported allocation family, with glibc's semantics and
 * glibc's internal aliases.  Each function checks its arguments and calls
 * the core; nothing here knows how memory is laid out.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "gpa.h"
#include "internal.h"
#include "os.h"
#include "stats.h"

#define ALIAS(name) __attribute__((alias(#name), visibility("default")))

static bool is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* The return address of the program's call: the first frame of every
 * stack the debug layer records. */
#define CALLER() ((uintptr_t)__builtin_return_address(0))

/* ---- the debug layer -------------------------------------------------------
 * Each entry point takes the debug layer's path only when GPA_OPTIONS
 * switched it on (debug_malloc_active); malloc and free ask only on their
 * slow paths.  Nothing here may call a core function that would give the
 * thread a heap of the plain instance (that would route its mallocs past the
 * layer): blocks made through gpa_default() reach the layer, which gives
 * them back to the core. */

/* ---- malloc and free --------------------------------------------------------
 * The fast paths are the core's inline ones; everything else is a named
 * slow path. */

static GPA_NOINLINE void *malloc_slow(size_t size, uintptr_t caller) {
  if (debug_malloc_active()) return debug_alloc(gpa_debug_malloc, size, GPA_MIN_ALIGN, false, caller, "malloc");
  return heap_malloc_generic(gpa_tls_heap, size);
}

GPA_EXPORT void *malloc(size_t size) {
  void *p = heap_malloc_direct(gpa_tls_heap, size);
  if (GPA_LIKELY(p != NULL)) return p;
  return malloc_slow(size, CALLER());
}

static GPA_NOINLINE void free_slow(void *p, uintptr_t caller) {
  if (debug_malloc_active()) debug_free(gpa_debug_malloc, p, false, 0, caller, "free");
  else heap_free_slow_path(gpa_tls_heap, p);
}

GPA_EXPORT void free(void *p) {
  if (GPA_LIKELY(heap_free_own(gpa_tls_heap, p))) return;
  free_slow(p, CALLER());
}

GPA_EXPORT void *calloc(size_t count, size_t size) {
  if (GPA_UNLIKELY(debug_malloc_active())) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
      errno = ENOMEM;
      return NULL;
    }
    return debug_alloc(gpa_debug_malloc, total, GPA_MIN_ALIGN, true, CALLER(), "calloc");
  }
  return gpa_core_calloc(count, size);
}

GPA_EXPORT void *realloc(void *p, size_t size) {
  if (GPA_UNLIKELY(debug_malloc_active())) return debug_realloc(gpa_debug_malloc, p, size, CALLER(), "realloc");
  return gpa_core_realloc(p, size);
}

GPA_EXPORT void *reallocarray(void *p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  if (GPA_UNLIKELY(debug_malloc_active())) return debug_realloc(gpa_debug_malloc, p, total, CALLER(), "reallocarray");
  return gpa_core_realloc(p, total);
}

void cfree(void *p); /* obsolete: no longer declared by glibc's headers */
GPA_EXPORT void cfree(void *p) {
  if (GPA_UNLIKELY(debug_malloc_active())) debug_free(gpa_debug_malloc, p, false, 0, CALLER(), "cfree");
  else gpa_core_free(p);
}

/* Sizes are accepted as given: any size that maps to the block is valid.
 * The debug layer holds them to the size asked for. */
GPA_EXPORT void free_sized(void *p, size_t size) {
  if (GPA_UNLIKELY(debug_malloc_active())) debug_free(gpa_debug_malloc, p, true, size, CALLER(), "free_sized");
  else gpa_core_free(p);
}

GPA_EXPORT void free_aligned_sized(void *p, size_t alignment, size_t size) {
  (void)alignment;
  if (GPA_UNLIKELY(debug_malloc_active())) debug_free(gpa_debug_malloc, p, true, size, CALLER(), "free_aligned_sized");
  else gpa_core_free(p);
}

/* Every aligned entry point ends here with a valid power-of-two alignment. */
static void *aligned_entry(size_t alignment, size_t size, uintptr_t caller, const char *op) {
  if (GPA_UNLIKELY(debug_malloc_active())) return debug_alloc(gpa_debug_malloc, size, alignment, false, caller, op);
  return gpa_core_aligned(alignment, size);
}

GPA_EXPORT void *aligned_alloc(size_t alignment, size_t size) {
  if (!is_power_of_two(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return aligned_entry(alignment, size, CALLER(), "aligned_alloc");
}

/* glibc rounds a non-power-of-two alignment up to the next power of two. */
GPA_EXPORT void *memalign(size_t alignment, size_t size) {
  if (alignment > ((size_t)1 << (sizeof(size_t) * CHAR_BIT - 1))) {
    errno = EINVAL;
    return NULL;
  }
  if (!is_power_of_two(alignment)) {
    size_t p = GPA_MIN_ALIGN;
    while (p < alignment) p <<= 1;
    alignment = p;
  }
  return aligned_entry(alignment, size, CALLER(), "memalign");
}

GPA_EXPORT int posix_memalign(void **memptr, size_t alignment, size_t size) {
  if (!is_power_of_two(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
  int saved = errno;
  void *p = aligned_entry(alignment, size, CALLER(), "posix_memalign");
  if (p == NULL) {
    errno = saved; /* posix_memalign reports through its result, not errno */
    return ENOMEM;
  }
  *memptr = p;
  return 0;
}

GPA_EXPORT void *valloc(size_t size) { return aligned_entry(os_page_size(), size, CALLER(), "valloc"); }

GPA_EXPORT void *pvalloc(size_t size) {
  size_t page = os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  size_t rounded = (size + page - 1) & ~(page - 1);
  return aligned_entry(page, rounded ? rounded : page, CALLER(), "pvalloc");
}

GPA_EXPORT size_t malloc_usable_size(void *p) {
  if (GPA_UNLIKELY(debug_malloc_active())) return debug_usable_size(gpa_debug_malloc, p, CALLER());
  return gpa_core_usable_size(p);
}

/* The instance behind the family: the debug state's when it is on. */
static gpa_instance_t *family_instance(void) {
  return debug_malloc_active() ? gpa_debug_malloc->inst : &gpa_default_instance;
}

GPA_EXPORT int malloc_trim(size_t pad) {
  (void)pad; /* no top-of-heap to keep padded: every free page can go */
  if (GPA_UNLIKELY(debug_malloc_active())) return debug_trim(gpa_debug_malloc) ? 1 : 0;
  return instance_trim(&gpa_default_instance) ? 1 : 0;
}

static size_t clamp_int(size_t v) { return v > INT_MAX ? INT_MAX : v; }

GPA_EXPORT struct mallinfo2 mallinfo2(void) {
  gpa_stats_t st;
  stats_collect(family_instance(), &st);
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = st.small_mapped;                 /* bytes in small segments */
  mi.ordblks = st.cached_segments;            /* free segments kept */
  mi.hblks = st.large_count;                  /* live large objects */
  mi.hblkhd = st.large_mapped;                /* bytes mapped for large objects */
  mi.uordblks = st.slab_bytes + st.large_in_use;
  mi.fordblks = st.small_mapped - st.slab_bytes + st.large_cached;
  mi.keepcost = 0;                            /* nothing like glibc's top chunk */
  return mi;
}

GPA_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = (int)clamp_int(m2.arena);
  mi.ordblks = (int)clamp_int(m2.ordblks);
  mi.hblks = (int)clamp_int(m2.hblks);
  mi.hblkhd = (int)clamp_int(m2.hblkhd);
  mi.uordblks = (int)clamp_int(m2.uordblks);
  mi.fordblks = (int)clamp_int(m2.fordblks);
  return mi;
}

static void append(char *buf, size_t *len, size_t cap, const char *label, size_t value) {
  char digits[24];
  size_t i = sizeof digits;
  digits[--i] = '\0';
  do {
    digits[--i] = (char)('0' + value % 10);
    value /= 10;
  } while (value != 0);
  const char *parts[] = { label, digits + i, "\n" };
  for (size_t k = 0; k < 3; k++) {
    size_t n = strlen(parts[k]);
    if (n > cap - *len) n = cap - *len;
    memcpy(buf + *len, parts[k], n);
    *len += n;
  }
}

/* Like glibc, a short table on stderr. */
GPA_EXPORT void malloc_stats(void) {
  gpa_stats_t st;
  stats_collect(family_instance(), &st);
  char buf[512];
  size_t len = 0;
  append(buf, &len, sizeof buf, "gpa: small segment bytes = ", st.small_mapped);
  append(buf, &len, sizeof buf, "gpa: slab bytes in use   = ", st.slab_bytes);
  append(buf, &len, sizeof buf, "gpa: cached segments     = ", st.cached_segments);
  append(buf, &len, sizeof buf, "gpa: large objects       = ", st.large_count);
  append(buf, &len, sizeof buf, "gpa: large bytes in use  = ", st.large_in_use);
  append(buf, &len, sizeof buf, "gpa: large bytes mapped  = ", st.large_mapped);
  append(buf, &len, sizeof buf, "gpa: bytes purged so far = ", st.purged_total);
  os_write_all(2, buf, len);
}

/* glibc's tuning knobs have no counterpart here: recognised ones are
 * accepted (1) and ignored, unknown ones refused (0), as glibc does. */
GPA_EXPORT int mallopt(int param, int value) {
  (void)value;
  switch (param) {
  case M_MXFAST: case M_TRIM_THRESHOLD: case M_TOP_PAD: case M_MMAP_THRESHOLD:
  case M_MMAP_MAX: case M_CHECK_ACTION: case M_PERTURB: case M_ARENA_TEST:
  case M_ARENA_MAX:
    return 1;
  default:
    return 0;
  }
}

/* glibc's internal names, used by some programs and by glibc itself.  The
 * aliases need not repeat the attributes glibc's headers put on the public
 * names. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
void *__libc_malloc(size_t size) ALIAS(malloc);
void __libc_free(void *p) ALIAS(free);
void *__libc_calloc(size_t count, size_t size) ALIAS(calloc);
void *__libc_realloc(void *p, size_t size) ALIAS(realloc);
void *__libc_memalign(size_t alignment, size_t size) ALIAS(memalign);
void *__libc_valloc(size_t size) ALIAS(valloc);
void *__libc_pvalloc(size_t size) ALIAS(pvalloc);
int __posix_memalign(void **memptr, size_t alignment, size_t size) ALIAS(posix_memalign);

/*
 * test_api.c: the allocation family's contract, with glibc's semantics.
 *
 * Built twice, against libgpa.so and libgpa.a; in both the process's malloc
 * is libgpa's.  Every test asserts behaviour that breaks if the point it is
 * named after breaks.  Sizes and pointers the compiler could reason about
 * pass through volatile variables, so nothing is folded or warned about at
 * compile time.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gpa.h"
#include "test_support.h"

/* Not declared by glibc's headers: the obsolete cfree and glibc's internal
 * names, which libgpa exports as aliases. */
void cfree(void *p);
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
int __posix_memalign(void **memptr, size_t alignment, size_t size);

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)
#define SMALL_LIMIT (256 * KiB) /* above this, libgpa makes a large object */
#define ERRNO_SENTINEL 12345

/* ---- helpers ------------------------------------------------------------ */

/* A value the optimiser cannot see through. */
static size_t opaque_size(size_t n) {
  volatile size_t v = n;
  return v;
}

static void *opaque_ptr(void *p) {
  void *volatile v = p;
  return v;
}

static int is_aligned(const void *p, size_t alignment) {
  return ((uintptr_t)p & (alignment - 1)) == 0;
}

static size_t page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  return ps > 0 ? (size_t)ps : 4096;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static size_t next_power_of_two(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

/* xorshift64*: deterministic pseudo-random numbers. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}
static size_t rng_below(size_t n) { return (size_t)(rng_next() % n); }

/* A size between lo and hi, spread evenly over the powers of two. */
static size_t rng_log_size(size_t lo, size_t hi) {
  unsigned lo_bits = 63u - (unsigned)__builtin_clzll(lo);
  unsigned hi_bits = 63u - (unsigned)__builtin_clzll(hi);
  unsigned bits = lo_bits + (unsigned)rng_below(hi_bits - lo_bits + 1);
  size_t base = (size_t)1 << bits;
  size_t n = base + rng_below(base);
  if (n < lo) n = lo;
  if (n > hi) n = hi;
  return n;
}


/* Index of the first non-zero byte, or SIZE_MAX. */
static size_t first_nonzero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) return i;
  return SIZE_MAX;
}

#define assert_all_zero(p, n) assert_int_equal(first_nonzero((p), (n)), SIZE_MAX)

/* Writes every usable byte of `p`, then reads them back. */
static void assert_usable(void *p, size_t requested, uint64_t seed) {
  size_t usable = malloc_usable_size(p);
  assert_true(usable >= requested);
  fill(p, usable, seed);
  assert_pattern(p, usable, seed);
}

static int compare_uintptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- malloc(0) ---------------------------------------------------------- */

static void test_malloc_zero_unique(void **state) {
  (void)state;
  enum { N = 64 };
  void *blocks[N];
  uintptr_t addr[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = malloc(opaque_size(0));
    assert_non_null(blocks[i]);
    assert_true(is_aligned(blocks[i], 16));
    addr[i] = (uintptr_t)opaque_ptr(blocks[i]);
  }
  qsort(addr, N, sizeof addr[0], compare_uintptr);
  for (int i = 1; i < N; i++) assert_true(addr[i - 1] != addr[i]);
  for (int i = 0; i < N; i++) free(blocks[i]);
  /* And freeing them made them available again: no crash, still unique. */
  void *a = malloc(opaque_size(0)), *b = malloc(opaque_size(0));
  assert_non_null(a);
  assert_non_null(b);
  assert_true((uintptr_t)opaque_ptr(a) != (uintptr_t)opaque_ptr(b));
  free(a);
  free(b);
}

/* ---- 16-byte alignment -------------------------------------------------- */

static void test_alignment_small_sizes(void **state) {
  (void)state;
  enum { LAST = 4096 };
  void **m = malloc((LAST + 1) * sizeof *m);
  void **c = malloc((LAST + 1) * sizeof *c);
  assert_non_null(m);
  assert_non_null(c);
  /* All live at once, so every slot of every slab is looked at. */
  for (size_t n = 0; n <= LAST; n++) {
    m[n] = malloc(opaque_size(n));
    c[n] = calloc(1, opaque_size(n));
    assert_non_null(m[n]);
    assert_non_null(c[n]);
    assert_true(is_aligned(m[n], 16));
    assert_true(is_aligned(c[n], 16));
  }
  /* realloc through every size, growing then shrinking. */
  void *r = NULL;
  for (size_t n = 1; n <= LAST; n++) {
    r = realloc(r, opaque_size(n));
    assert_non_null(r);
    assert_true(is_aligned(r, 16));
  }
  for (size_t n = LAST; n >= 1; n--) {
    r = realloc(r, opaque_size(n));
    assert_non_null(r);
    assert_true(is_aligned(r, 16));
  }
  free(r);
  for (size_t n = 0; n <= LAST; n++) {
    free(m[n]);
    free(c[n]);
  }
  free(m);
  free(c);
}

static void test_alignment_large_sizes(void **state) {
  (void)state;
  /* Sizes up to 8 MiB: each power of two, and its neighbours. */
  void *r = NULL;
  for (size_t base = 4096; base <= 8 * MiB; base *= 2) {
    const size_t sizes[] = { base - 1, base, base + 1, base + base / 2 + 7 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = opaque_size(sizes[k]);
      void *m = malloc(n), *c = calloc(1, n), *c2 = calloc(n / 16 + 1, 16);
      assert_non_null(m);
      assert_non_null(c);
      assert_non_null(c2);
      assert_true(is_aligned(m, 16));
      assert_true(is_aligned(c, 16));
      assert_true(is_aligned(c2, 16));
      r = realloc(r, n);
      assert_non_null(r);
      assert_true(is_aligned(r, 16));
      free(m);
      free(c);
      free(c2);
    }
  }
  /* realloc back down through the same sizes. */
  for (size_t n = 8 * MiB; n >= 16; n = n / 3) {
    r = realloc(r, opaque_size(n));
    assert_non_null(r);
    assert_true(is_aligned(r, 16));
  }
  free(r);
}

/* ---- failure: NULL and ENOMEM -------------------------------------------- */

static void test_malloc_enomem(void **state) {
  (void)state;
  const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    errno = 0;
    void *p = malloc(opaque_size(sizes[k]));
    assert_null(p);
    assert_int_equal(errno, ENOMEM);
  }
  /* The allocator still works afterwards. */
  void *p = malloc(opaque_size(100));
  assert_non_null(p);
  free(p);
}

static void test_calloc_overflow(void **state) {
  (void)state;
  const size_t pairs[][2] = {
    { SIZE_MAX / 2, 3 }, { 3, SIZE_MAX / 2 }, { SIZE_MAX, SIZE_MAX },
    { (size_t)1 << 32, (size_t)1 << 32 }, { SIZE_MAX / 2 + 2, 2 }, { 1, SIZE_MAX }, { SIZE_MAX, 1 },
  };
  for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
    errno = 0;
    void *p = calloc(opaque_size(pairs[k][0]), opaque_size(pairs[k][1]));
    assert_null(p);
    assert_int_equal(errno, ENOMEM);
  }
}

static void test_reallocarray_overflow(void **state) {
  (void)state;
  const size_t sizes[] = { 100, 300 * KiB };
  for (size_t k = 0; k < 2; k++) {
    size_t n = sizes[k];
    unsigned char *p = malloc(opaque_size(n));
    assert_non_null(p);
    fill(p, n, 11 + k);
    errno = 0;
    void *q = reallocarray(opaque_ptr(p), opaque_size(SIZE_MAX / 2), opaque_size(3));
    assert_null(q);
    assert_int_equal(errno, ENOMEM);
    /* A product that wraps around to a small number (2^64 + 2 -> 2). */
    errno = 0;
    q = reallocarray(opaque_ptr(p), opaque_size(SIZE_MAX / 2 + 2), opaque_size(2));
    assert_null(q);
    assert_int_equal(errno, ENOMEM);
    /* The old block is intact and still ours. */
    assert_pattern(p, n, 11 + k);
    assert_true(malloc_usable_size(p) >= n);
    free(p);
  }
}

static void test_pvalloc_overflow(void **state) {
  (void)state;
  size_t page = page_size();
  const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - page + 2, SIZE_MAX - page - 1 };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    errno = 0;
    void *p = pvalloc(opaque_size(sizes[k]));
    assert_null(p);
    assert_int_equal(errno, ENOMEM);
  }
}

static void test_realloc_failure_keeps_block(void **state) {
  (void)state;
  const size_t sizes[] = { 1, 100, 4000, 200 * KiB, 300 * KiB, 3 * MiB };
  const size_t huge[] = { SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1 };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    unsigned char *p = malloc(opaque_size(n));
    assert_non_null(p);
    fill(p, n, 100 + k);
    for (size_t h = 0; h < sizeof huge / sizeof huge[0]; h++) {
      errno = 0;
      void *q = realloc(opaque_ptr(p), opaque_size(huge[h]));
      assert_null(q);
      assert_int_equal(errno, ENOMEM);
      assert_pattern(p, n, 100 + k);
      assert_true(malloc_usable_size(p) >= n);
    }
    /* Still a live block: it can grow for real now. */
    unsigned char *q = realloc(p, opaque_size(n + 1000));
    assert_non_null(q);
    assert_pattern(q, n, 100 + k);
    free(q);
  }
}

/* ---- posix_memalign, aligned_alloc, memalign, valloc, pvalloc ------------- */

static void test_posix_memalign_einval(void **state) {
  (void)state;
  const size_t bad[] = { 0, 1, 2, 3, sizeof(void *) / 2, 12, 24, 48, 100, 4097,
                         ((size_t)1 << 20) + 8 };
  void *const untouched = (void *)(uintptr_t)0xDEADBEE0;
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    void *p = untouched;
    int rc = posix_memalign(&p, opaque_size(bad[k]), opaque_size(64));
    assert_int_equal(rc, EINVAL);
    assert_ptr_equal(p, untouched);
  }
  /* ENOMEM is reported the same way: *memptr untouched. */
  void *p = untouched;
  int rc = posix_memalign(&p, 64, opaque_size(SIZE_MAX - 4096));
  assert_int_equal(rc, ENOMEM);
  assert_ptr_equal(p, untouched);
}

static void test_posix_memalign_alignments(void **state) {
  (void)state;
  for (size_t a = sizeof(void *); a <= 2 * MiB; a *= 2) {
    const size_t sizes[] = { 1, 8, a / 2 + 1, a - 1, a, a + 1, 3 * a + 5, 1000, 70000 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = sizes[k];
      void *p = NULL;
      int rc = posix_memalign(&p, opaque_size(a), opaque_size(n));
      assert_int_equal(rc, 0);
      assert_non_null(p);
      assert_true(is_aligned(p, a));
      assert_usable(p, n, a + k);
      free(p);
    }
    /* Several live at once, each still aligned and intact. */
    void *live[4];
    for (int i = 0; i < 4; i++) {
      assert_int_equal(posix_memalign(&live[i], opaque_size(a), opaque_size(a)), 0);
      assert_true(is_aligned(live[i], a));
      fill(live[i], a, (uint64_t)i);
    }
    for (int i = 0; i < 4; i++) {
      assert_pattern(live[i], a, (uint64_t)i);
      free(live[i]);
    }
  }
}

/* Alignments above half a segment: the pointer is itself segment-aligned. */
static void test_overaligned_blocks(void **state) {
  (void)state;
  const size_t aligns[] = { 4 * MiB, 8 * MiB, 32 * MiB };
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    size_t a = aligns[i];
    const size_t sizes[] = { 0, 1, 100, 5000, a / 2 + 3 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      void *p = NULL;
      assert_int_equal(posix_memalign(&p, opaque_size(a), opaque_size(sizes[k])), 0);
      assert_true(is_aligned(p, a));
      assert_usable(p, sizes[k], k + 7);
      void *q = aligned_alloc(opaque_size(a), opaque_size(sizes[k]));
      assert_non_null(q);
      assert_true(is_aligned(q, a));
      assert_true(malloc_usable_size(q) >= sizes[k]);
      free(q);
      free(p);
    }
    /* realloc moves it and keeps the bytes. */
    unsigned char *r = memalign(opaque_size(a), opaque_size(3000));
    assert_non_null(r);
    assert_true(is_aligned(r, a));
    fill(r, 3000, 99);
    r = realloc(r, opaque_size(1 * MiB));
    assert_non_null(r);
    assert_pattern(r, 3000, 99);
    free(r);
  }
}

static void test_aligned_alloc_einval(void **state) {
  (void)state;
  const size_t bad[] = { 0, 3, 24, 48, 100, 3 * 4096, ((size_t)1 << 20) + 16 };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    errno = 0;
    void *p = aligned_alloc(opaque_size(bad[k]), opaque_size(bad[k] ? bad[k] * 4 : 64));
    assert_null(p);
    assert_int_equal(errno, EINVAL);
  }
}

static void check_aligned_block(void *p, size_t alignment, size_t size, uint64_t seed) {
  assert_non_null(p);
  assert_true(is_aligned(p, alignment));
  assert_usable(p, size, seed);
}

static void test_aligned_alloc_memalign_many(void **state) {
  (void)state;
  for (size_t a = 16; a <= 1 * MiB; a *= 2) {
    const size_t sizes[] = { 0, 1, 16, 100, a / 2, a - 1, a, a + 1, 2 * a + 16, 5000 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = sizes[k];
      void *x = aligned_alloc(opaque_size(a), opaque_size(n));
      void *y = memalign(opaque_size(a), opaque_size(n));
      check_aligned_block(x, a, n, 2 * k);
      check_aligned_block(y, a, n, 2 * k + 1);
      assert_true(x != y);
      /* x was not overwritten by y's fill. */
      assert_pattern(x, n, 2 * k);
      free(x);
      free(y);
    }
  }
}

static void test_memalign_rounds_up(void **state) {
  (void)state;
  const size_t odd[] = { 5, 17, 24, 48, 100, 1000, 3000, 5000, 65537, 100000, 700000 };
  for (size_t k = 0; k < sizeof odd / sizeof odd[0]; k++) {
    size_t want = next_power_of_two(odd[k]);
    void *blocks[3];
    for (int i = 0; i < 3; i++) {
      blocks[i] = memalign(opaque_size(odd[k]), opaque_size(10 + (size_t)i * 1000));
      assert_non_null(blocks[i]);
      assert_true(is_aligned(blocks[i], want));
      assert_usable(blocks[i], 10 + (size_t)i * 1000, k);
    }
    for (int i = 0; i < 3; i++) free(blocks[i]);
  }
}

static void test_valloc_pvalloc(void **state) {
  (void)state;
  size_t page = page_size();
  const size_t sizes[] = { 0, 1, 100, page - 1, page, page + 1, 3 * page + 7, 100000,
                           SMALL_LIMIT + 1, 1 * MiB, 5 * MiB + 3 };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    void *v = valloc(opaque_size(n));
    assert_non_null(v);
    assert_true(is_aligned(v, page));
    assert_usable(v, n, k);

    void *p = pvalloc(opaque_size(n));
    assert_non_null(p);
    assert_true(is_aligned(p, page));
    size_t rounded = n == 0 ? page : round_up(n, page);
    assert_true(malloc_usable_size(p) >= rounded);
    assert_usable(p, rounded, k + 50);
    assert_pattern(v, malloc_usable_size(v), k);
    free(v);
    free(p);
  }
}

/* ---- realloc ------------------------------------------------------------- */

static void test_realloc_null_is_malloc(void **state) {
  (void)state;
  const size_t sizes[] = { 0, 1, 24, 1000, 5000, SMALL_LIMIT, SMALL_LIMIT + 1, 2 * MiB };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    errno = ERRNO_SENTINEL;
    void *p = realloc(NULL, opaque_size(sizes[k]));
    assert_int_equal(errno, ERRNO_SENTINEL);
    assert_non_null(p);
    assert_true(is_aligned(p, 16));
    assert_usable(p, sizes[k], k);
    free(p);
  }
}

static void test_realloc_zero_frees(void **state) {
  (void)state;
  const size_t sizes[] = { 1, 100, 4096, SMALL_LIMIT, SMALL_LIMIT + 1, 4 * MiB };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    void *p = malloc(opaque_size(sizes[k]));
    assert_non_null(p);
    errno = ERRNO_SENTINEL;
    void *q = realloc(p, opaque_size(0));
    assert_null(q);
    assert_int_equal(errno, ERRNO_SENTINEL);
  }
  /* The blocks really went back: 20000 rounds of 64 KiB and of 1 MiB would
   * otherwise leave gigabytes in use. */
  malloc_trim(0);
  struct mallinfo2 before = mallinfo2();
  for (int i = 0; i < 20000; i++) {
    void *p = malloc(opaque_size(64 * KiB));
    assert_non_null(p);
    ((volatile char *)p)[0] = 1;
    assert_null(realloc(p, opaque_size(0)));
    p = malloc(opaque_size(1 * MiB));
    assert_non_null(p);
    ((volatile char *)p)[0] = 1;
    assert_null(realloc(p, opaque_size(0)));
  }
  struct mallinfo2 after = mallinfo2();
  assert_true(after.uordblks < before.uordblks + 16 * MiB);
  assert_true(after.hblks <= before.hblks + 1);
}

static void test_realloc_small_to_small(void **state) {
  (void)state;
  size_t n = 40;
  unsigned char *p = malloc(opaque_size(n));
  assert_non_null(p);
  fill(p, n, 1);
  /* Grow step by step: each step keeps the old bytes. */
  const size_t grow[] = { 41, 64, 100, 500, 1000, 3000, 20000, 100000, SMALL_LIMIT };
  for (size_t k = 0; k < sizeof grow / sizeof grow[0]; k++) {
    p = realloc(p, opaque_size(grow[k]));
    assert_non_null(p);
    assert_pattern(p, n, 1);
    n = grow[k];
    fill(p, n, 1);
  }
  /* Shrink: the surviving prefix is kept. */
  const size_t shrink[] = { 200000, 50000, 4000, 1000, 300, 40, 17, 1 };
  for (size_t k = 0; k < sizeof shrink / sizeof shrink[0]; k++) {
    p = realloc(p, opaque_size(shrink[k]));
    assert_non_null(p);
    n = shrink[k];
    assert_pattern(p, n, 1);
  }
  free(p);
}

static void test_realloc_small_to_large(void **state) {
  (void)state;
  const size_t from[] = { 1, 100, 1000, 4096, 100000, SMALL_LIMIT };
  const size_t to[] = { SMALL_LIMIT + 1, 300 * KiB, 1 * MiB, 6 * MiB };
  for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
    for (size_t j = 0; j < sizeof to / sizeof to[0]; j++) {
      uint64_t seed = i * 16 + j;
      unsigned char *p = malloc(opaque_size(from[i]));
      assert_non_null(p);
      fill(p, from[i], seed);
      p = realloc(p, opaque_size(to[j]));
      assert_non_null(p);
      assert_true(is_aligned(p, 16));
      assert_pattern(p, from[i], seed);
      assert_usable(p, to[j], seed + 1);
      free(p);
    }
  }
}

static void test_realloc_large_grow(void **state) {
  (void)state;
  size_t n = 300 * KiB;
  unsigned char *p = malloc(opaque_size(n));
  assert_non_null(p);
  fill(p, n, 7);
  /* A neighbour, so growing in place is not always possible. */
  void *neighbour = malloc(opaque_size(400 * KiB));
  assert_non_null(neighbour);
  fill(neighbour, 400 * KiB, 8);
  const size_t grow[] = { 301 * KiB, 1 * MiB, 5 * MiB, 64 * MiB, 100 * MiB + 12345 };
  for (size_t k = 0; k < sizeof grow / sizeof grow[0]; k++) {
    p = realloc(p, opaque_size(grow[k]));
    assert_non_null(p);
    assert_true(is_aligned(p, 16));
    assert_pattern(p, n, 7);
    /* Fill the new part too, and check it at the next step. */
    n = grow[k];
    fill(p, n, 7);
  }
  assert_pattern(p, n, 7);
  assert_pattern(neighbour, 400 * KiB, 8);
  /* Large shrinks keep the prefix. */
  const size_t shrink[] = { 50 * MiB, 3 * MiB, 400 * KiB, SMALL_LIMIT + 1 };
  for (size_t k = 0; k < sizeof shrink / sizeof shrink[0]; k++) {
    p = realloc(p, opaque_size(shrink[k]));
    assert_non_null(p);
    n = shrink[k];
    assert_pattern(p, n, 7);
  }
  free(p);
  free(neighbour);
}

static void test_realloc_large_to_small(void **state) {
  (void)state;
  const size_t from[] = { SMALL_LIMIT + 1, 2 * MiB, 9 * MiB };
  const size_t to[] = { 1, 100, 1000, 70000, SMALL_LIMIT };
  for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
    for (size_t j = 0; j < sizeof to / sizeof to[0]; j++) {
      uint64_t seed = 1000 + i * 16 + j;
      unsigned char *p = malloc(opaque_size(from[i]));
      assert_non_null(p);
      fill(p, from[i], seed);
      p = realloc(p, opaque_size(to[j]));
      assert_non_null(p);
      assert_true(is_aligned(p, 16));
      assert_pattern(p, to[j], seed);
      assert_usable(p, to[j], seed);
      free(p);
    }
  }
}

static void test_realloc_random(void **state) {
  (void)state;
  enum { SLOTS = 128, ROUNDS = 6000 };
  unsigned char *block[SLOTS] = { 0 };
  size_t size[SLOTS] = { 0 };
  uint64_t seed[SLOTS] = { 0 };
  rng_state = 0x1234567887654321ull;
  for (int r = 0; r < ROUNDS; r++) {
    size_t i = rng_below(SLOTS);
    size_t n;
    switch (rng_below(8)) {
    case 0: n = rng_log_size(SMALL_LIMIT / 2, 3 * MiB); break; /* around and above the large limit */
    case 1: n = rng_below(17); break;
    default: n = rng_log_size(1, 32 * KiB); break;
    }
    if (n == 0) n = 1; /* realloc(p, 0) frees: tested on its own */
    unsigned char *q = realloc(block[i], opaque_size(n));
    assert_non_null(q);
    assert_true(is_aligned(q, 16));
    size_t keep = size[i] < n ? size[i] : n;
    assert_pattern(q, keep, seed[i]);
    block[i] = q;
    size[i] = n;
    seed[i] = rng_next();
    fill(q, n, seed[i]);
  }
  for (size_t i = 0; i < SLOTS; i++) {
    assert_pattern(block[i], size[i], seed[i]);
    free(block[i]);
  }
}

/* ---- errno --------------------------------------------------------------- */

/* Runs `call` with errno set to the sentinel and asserts it is unchanged. */
#define KEEPS_ERRNO(call)                          \
  do {                                             \
    errno = ERRNO_SENTINEL;                        \
    call;                                          \
    assert_int_equal(errno, ERRNO_SENTINEL);       \
  } while (0)

static void test_free_null(void **state) {
  (void)state;
  for (int i = 0; i < 3; i++) KEEPS_ERRNO(free(opaque_ptr(NULL)));
  KEEPS_ERRNO(cfree(opaque_ptr(NULL)));
  KEEPS_ERRNO(free_sized(opaque_ptr(NULL), 0));
  KEEPS_ERRNO(free_aligned_sized(opaque_ptr(NULL), 64, 0));
}

static void errno_round(size_t n, int trim) {
  void *p = NULL, *q = NULL, *r = NULL, *a = NULL, *m = NULL, *pm = NULL;
  size_t usable = 0;
  int rc = -1;
  KEEPS_ERRNO(p = malloc(opaque_size(n)));
  assert_non_null(p);
  KEEPS_ERRNO(q = calloc(opaque_size(n / 16 + 1), 16));
  assert_non_null(q);
  KEEPS_ERRNO(r = realloc(NULL, opaque_size(n)));
  assert_non_null(r);
  KEEPS_ERRNO(r = realloc(r, opaque_size(n * 3 + 1)));
  assert_non_null(r);
  KEEPS_ERRNO(r = realloc(r, opaque_size(n / 3 + 1)));
  assert_non_null(r);
  KEEPS_ERRNO(rc = posix_memalign(&pm, 256, opaque_size(n)));
  assert_int_equal(rc, 0);
  KEEPS_ERRNO(a = aligned_alloc(4096, opaque_size(n)));
  assert_non_null(a);
  KEEPS_ERRNO(m = memalign(64, opaque_size(n)));
  assert_non_null(m);
  KEEPS_ERRNO(usable = malloc_usable_size(p));
  assert_true(usable >= n);
  KEEPS_ERRNO(usable = malloc_usable_size(NULL));
  assert_int_equal(usable, 0);
  KEEPS_ERRNO(free(p));
  KEEPS_ERRNO(free(q));
  KEEPS_ERRNO(free(r));
  KEEPS_ERRNO(free(pm));
  KEEPS_ERRNO(free(a));
  KEEPS_ERRNO(free(m));
  if (trim) KEEPS_ERRNO(malloc_trim(0));
}

static void test_errno_preserved(void **state) {
  (void)state;
  const size_t sizes[] = { 0, 1, 100, 3000, 70000, SMALL_LIMIT, SMALL_LIMIT + 1, 1 * MiB, 40 * MiB };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) errno_round(sizes[k], 0);
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) errno_round(sizes[k], 1);
  /* Many blocks at once, so slabs and segments come and go. */
  enum { N = 3000 };
  void **blocks = malloc(N * sizeof *blocks);
  assert_non_null(blocks);
  for (int i = 0; i < N; i++) KEEPS_ERRNO(blocks[i] = malloc(opaque_size((size_t)(i % 7) * 1500 + 16)));
  for (int i = 0; i < N; i++) KEEPS_ERRNO(free(blocks[i]));
  KEEPS_ERRNO(malloc_trim(0));
  free(blocks);
}

/* ---- calloc zeroes reused memory ----------------------------------------- */

static void calloc_reuse_round(size_t size, size_t count, int rounds) {
  void **blocks = malloc(count * sizeof *blocks);
  assert_non_null(blocks);
  for (int r = 0; r < rounds; r++) {
    for (size_t i = 0; i < count; i++) {
      blocks[i] = malloc(opaque_size(size));
      assert_non_null(blocks[i]);
      memset(blocks[i], 0xAA, malloc_usable_size(blocks[i]));
    }
    for (size_t i = 0; i < count; i++) free(blocks[i]);
    for (size_t i = 0; i < count; i++) {
      /* Alternate the two ways of asking for the same bytes. */
      blocks[i] = (i & 1) ? calloc(opaque_size(size), 1) : calloc(1, opaque_size(size));
      assert_non_null(blocks[i]);
      assert_all_zero(blocks[i], size);
    }
    for (size_t i = 0; i < count; i++) {
      memset(blocks[i], 0xAA, size);
      free(blocks[i]);
    }
  }
  free(blocks);
}

static void test_calloc_zero_small(void **state) {
  (void)state;
  const size_t sizes[] = { 1, 8, 16, 24, 100, 1000, 4096, 10000, 100000, SMALL_LIMIT };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t count = sizes[k] >= 10000 ? 16 : 200;
    calloc_reuse_round(sizes[k], count, 20);
  }
  /* Array form with a count above one. */
  for (int r = 0; r < 50; r++) {
    unsigned *a = malloc(opaque_size(1000 * sizeof *a));
    assert_non_null(a);
    memset(a, 0xAA, 1000 * sizeof *a);
    free(a);
    a = calloc(opaque_size(1000), sizeof *a);
    assert_non_null(a);
    assert_all_zero(a, 1000 * sizeof *a);
    free(a);
  }
}

static void test_calloc_zero_large(void **state) {
  (void)state;
  const size_t sizes[] = { SMALL_LIMIT + 1, 300 * KiB, 1 * MiB, 3 * MiB + 5, 5 * MiB };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) calloc_reuse_round(sizes[k], 4, 8);
  /* Dirty memory left behind by a shrinking realloc, then reused. */
  for (int r = 0; r < 8; r++) {
    unsigned char *p = malloc(opaque_size(4 * MiB));
    assert_non_null(p);
    memset(p, 0xAA, 4 * MiB);
    p = realloc(p, opaque_size(1 * MiB));
    assert_non_null(p);
    free(p);
    p = calloc(1, opaque_size(1 * MiB));
    assert_non_null(p);
    assert_all_zero(p, 1 * MiB);
    memset(p, 0xAA, 1 * MiB);
    p = realloc(p, opaque_size(3 * MiB));
    assert_non_null(p);
    memset(p, 0xAA, 3 * MiB);
    free(p);
    p = calloc(3, opaque_size(1 * MiB));
    assert_non_null(p);
    assert_all_zero(p, 3 * MiB);
    free(p);
  }
}

/* ---- malloc_usable_size -------------------------------------------------- */

static void test_usable_size(void **state) {
  (void)state;
  assert_int_equal(malloc_usable_size(NULL), 0);
  for (size_t n = 0; n <= 5000; n += (n < 300 ? 1 : 37)) {
    void *p = malloc(opaque_size(n));
    assert_non_null(p);
    assert_usable(p, n, n);
    free(p);
  }
  const size_t big[] = { 10000, 65536, 100000, SMALL_LIMIT, SMALL_LIMIT + 1, 1 * MiB + 1, 7 * MiB };
  for (size_t k = 0; k < sizeof big / sizeof big[0]; k++) {
    void *p = malloc(opaque_size(big[k]));
    assert_non_null(p);
    assert_usable(p, big[k], k);
    void *c = calloc(1, opaque_size(big[k]));
    assert_non_null(c);
    assert_usable(c, big[k], k + 1);
    p = realloc(p, opaque_size(big[k] + 100));
    assert_non_null(p);
    assert_usable(p, big[k] + 100, k + 2);
    free(p);
    free(c);
  }
}

/* ---- reallocarray, cfree, free_sized, free_aligned_sized ----------------- */

static void test_reallocarray_normal(void **state) {
  (void)state;
  int *a = reallocarray(NULL, opaque_size(10), sizeof *a);
  assert_non_null(a);
  for (int i = 0; i < 10; i++) a[i] = i * 3;
  a = reallocarray(a, opaque_size(100000), sizeof *a); /* 400 KB: large */
  assert_non_null(a);
  for (int i = 0; i < 10; i++) assert_int_equal(a[i], i * 3);
  for (int i = 10; i < 100000; i++) a[i] = i * 3;
  assert_true(malloc_usable_size(a) >= 100000 * sizeof *a);
  a = reallocarray(a, opaque_size(1000), sizeof *a);
  assert_non_null(a);
  for (int i = 0; i < 1000; i++) assert_int_equal(a[i], i * 3);
  a = reallocarray(a, opaque_size(20), sizeof *a);
  assert_non_null(a);
  for (int i = 0; i < 20; i++) assert_int_equal(a[i], i * 3);
  free(a);
}

/* Frees `rounds` blocks of `size` through `release`; asserts the memory came
 * back (usage stays flat), and that every block was usable. */
typedef void (*release_fn)(void *p, size_t size, size_t alignment);

static void release_cfree(void *p, size_t size, size_t alignment) {
  (void)size;
  (void)alignment;
  cfree(p);
}
static void release_sized(void *p, size_t size, size_t alignment) {
  (void)alignment;
  free_sized(p, size);
}
static void release_aligned_sized(void *p, size_t size, size_t alignment) {
  free_aligned_sized(p, alignment, size);
}

static void check_release(release_fn release, size_t size, size_t alignment, int rounds) {
  malloc_trim(0);
  struct mallinfo2 before = mallinfo2();
  void *previous = NULL;
  int reused = 0;
  for (int r = 0; r < rounds; r++) {
    void *p = alignment ? aligned_alloc(alignment, opaque_size(size)) : malloc(opaque_size(size));
    assert_non_null(p);
    if (alignment) assert_true(is_aligned(p, alignment));
    if (p == previous) reused++;
    fill(p, size < 256 ? size : 256, (uint64_t)r);
    assert_pattern(p, size < 256 ? size : 256, (uint64_t)r);
    ((volatile unsigned char *)p)[size - 1] = 0x5A; /* the far end is ours too */
    previous = p;
    release(p, size, alignment);
  }
  struct mallinfo2 after = mallinfo2();
  /* Without the frees this would hold rounds * size bytes. */
  assert_true(after.uordblks < before.uordblks + 16 * MiB);
  assert_true(after.hblks <= before.hblks + 1);
  /* Same size on the same thread, one at a time: the block comes back. */
  assert_true(reused > 0);
}

static void test_cfree(void **state) {
  (void)state;
  check_release(release_cfree, 64, 0, 1000);
  check_release(release_cfree, 16 * KiB, 0, 20000);
  check_release(release_cfree, 1 * MiB, 0, 2000);
}

static void test_free_sized(void **state) {
  (void)state;
  check_release(release_sized, 24, 0, 1000);
  check_release(release_sized, 100, 0, 1000);
  check_release(release_sized, 16 * KiB, 0, 20000);
  check_release(release_sized, 2 * MiB, 0, 2000);
  /* Sizes that map to the same block are accepted as well. */
  void *p = malloc(opaque_size(100));
  assert_non_null(p);
  free_sized(p, malloc_usable_size(p));
}

static void test_free_aligned_sized(void **state) {
  (void)state;
  check_release(release_aligned_sized, 64, 64, 1000);
  check_release(release_aligned_sized, 8 * KiB, 4096, 20000);
  check_release(release_aligned_sized, 1 * MiB, 65536, 2000);
  check_release(release_aligned_sized, 512 * KiB, 512 * KiB, 2000);
}

/* ---- glibc's internal names ---------------------------------------------- */

static void test_libc_internal_names(void **state) {
  (void)state;
  size_t page = page_size();

  void *p = __libc_malloc(opaque_size(100));
  assert_non_null(p);
  assert_true(malloc_usable_size(p) >= 100); /* ours: a foreign block would abort */
  fill(p, 100, 1);
  free(p);

  p = malloc(opaque_size(300 * KiB));
  assert_non_null(p);
  __libc_free(p);

  unsigned char *c = __libc_calloc(opaque_size(100), 10);
  assert_non_null(c);
  assert_all_zero(c, 1000);
  c = realloc(c, opaque_size(2000));
  assert_non_null(c);
  assert_all_zero(c, 1000);
  free(c);

  p = malloc(opaque_size(50));
  assert_non_null(p);
  fill(p, 50, 2);
  p = __libc_realloc(p, opaque_size(5000));
  assert_non_null(p);
  assert_pattern(p, 50, 2);
  p = __libc_realloc(p, opaque_size(2 * MiB));
  assert_non_null(p);
  assert_pattern(p, 50, 2);
  __libc_free(p);

  p = __libc_memalign(opaque_size(256), opaque_size(1000));
  assert_non_null(p);
  assert_true(is_aligned(p, 256));
  assert_usable(p, 1000, 3);
  free(p);

  p = __libc_valloc(opaque_size(10));
  assert_non_null(p);
  assert_true(is_aligned(p, page));
  assert_usable(p, 10, 4);
  __libc_free(p);

  p = __libc_pvalloc(opaque_size(10));
  assert_non_null(p);
  assert_true(is_aligned(p, page));
  assert_true(malloc_usable_size(p) >= page);
  assert_usable(p, page, 5);
  free(p);

  p = NULL;
  assert_int_equal(__posix_memalign(&p, opaque_size(1024), opaque_size(3000)), 0);
  assert_non_null(p);
  assert_true(is_aligned(p, 1024));
  assert_usable(p, 3000, 6);
  __libc_free(p);
  void *untouched = &page;
  p = untouched;
  assert_int_equal(__posix_memalign(&p, opaque_size(24), 64), EINVAL);
  assert_ptr_equal(p, untouched);
}

/* ---- mallinfo2, mallinfo, mallopt, malloc_stats -------------------------- */

static int clamp_to_int(size_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

/* mallinfo() reports mallinfo2()'s figures, clamped to int. */
static void assert_mallinfo_matches(void) {
  struct mallinfo2 m2 = mallinfo2();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
  assert_int_equal(m1.arena, clamp_to_int(m2.arena));
  assert_int_equal(m1.ordblks, clamp_to_int(m2.ordblks));
  assert_int_equal(m1.smblks, clamp_to_int(m2.smblks));
  assert_int_equal(m1.hblks, clamp_to_int(m2.hblks));
  assert_int_equal(m1.hblkhd, clamp_to_int(m2.hblkhd));
  assert_int_equal(m1.usmblks, clamp_to_int(m2.usmblks));
  assert_int_equal(m1.fsmblks, clamp_to_int(m2.fsmblks));
  assert_int_equal(m1.uordblks, clamp_to_int(m2.uordblks));
  assert_int_equal(m1.fordblks, clamp_to_int(m2.fordblks));
  assert_int_equal(m1.keepcost, clamp_to_int(m2.keepcost));
}

static void test_mallinfo2_large(void **state) {
  (void)state;
  enum { N = 16 };
  const size_t each = 4 * MiB;
  malloc_trim(0);
  struct mallinfo2 before = mallinfo2();
  assert_mallinfo_matches();
  void *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = malloc(opaque_size(each));
    assert_non_null(blocks[i]);
    memset(blocks[i], i, 4096);
  }
  struct mallinfo2 during = mallinfo2();
  assert_mallinfo_matches();
  assert_true(during.hblkhd >= before.hblkhd + N * each);
  assert_true(during.uordblks >= before.uordblks + N * each);
  assert_true(during.hblks >= before.hblks + N);
  for (int i = 0; i < N; i++) free(blocks[i]);
  malloc_trim(0);
  struct mallinfo2 after = mallinfo2();
  assert_mallinfo_matches();
  /* Everything went back: at most a little slack over where it started. */
  assert_true(after.hblkhd <= before.hblkhd + 1 * MiB);
  assert_true(after.uordblks <= before.uordblks + 1 * MiB);
  assert_true(after.hblks <= before.hblks);
}

static void test_mallinfo_clamps(void **state) {
  (void)state;
  /* 3 GiB of address space, never touched: more than an int can hold. */
  size_t n = opaque_size((size_t)3 << 30);
  void *p = malloc(n);
  if (p == NULL) skip(); /* an address-space limit on this machine */
  struct mallinfo2 m2 = mallinfo2();
  assert_true(m2.hblkhd >= n);
  assert_true(m2.uordblks >= n);
  assert_mallinfo_matches();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
  assert_int_equal(m1.hblkhd, INT_MAX);
  assert_int_equal(m1.uordblks, INT_MAX);
  free(p);
  malloc_trim(0);
}

static void test_mallopt(void **state) {
  (void)state;
  assert_int_equal(mallopt(M_MMAP_THRESHOLD, 1024 * 1024), 1);
  assert_int_equal(mallopt(M_TRIM_THRESHOLD, 128 * 1024), 1);
  assert_int_equal(mallopt(M_ARENA_MAX, 4), 1);
  assert_int_equal(mallopt(-12345, 0), 0);
  assert_int_equal(mallopt(12345, 1), 0);
  /* Still allocating normally afterwards. */
  void *p = malloc(opaque_size(2 * MiB));
  assert_non_null(p);
  free(p);
}

static void test_malloc_stats(void **state) {
  (void)state;
  void *keep = malloc(opaque_size(1 * MiB)); /* something to report */
  assert_non_null(keep);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(stderr);
  int saved = dup(2);
  assert_true(saved >= 0);
  assert_true(dup2(fds[1], 2) >= 0);
  malloc_stats();
  /* Put stderr back before any assertion can print. */
  int restored = dup2(saved, 2);
  close(saved);
  close(fds[1]);
  char text[8192];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fds[0], text + len, sizeof text - 1 - len);
    if (n <= 0) break;
    len += (size_t)n;
    if (len == sizeof text - 1) break;
  }
  close(fds[0]);
  text[len] = '\0';
  assert_true(restored >= 0);
  assert_true(len > 0);
  assert_non_null(strstr(text, "gpa"));
  assert_int_equal(strlen(text), len); /* text, no NUL bytes */
  assert_true(text[len - 1] == '\n');
  free(keep);
}

/* ---- version ------------------------------------------------------------- */

static void test_version(void **state) {
  (void)state;
  const char *v = gpa_version();
  assert_non_null(v);
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", GPA_VERSION_MAJOR, GPA_VERSION_MINOR,
           GPA_VERSION_PATCH);
  assert_string_equal(v, expected);
  assert_ptr_equal(gpa_version(), v); /* a static string */
}

/* ---- many live blocks ---------------------------------------------------- */

static void test_many_live_blocks(void **state) {
  (void)state;
  enum { N = 2500 };
  unsigned char **block = malloc(N * sizeof *block);
  size_t *size = malloc(N * sizeof *size);
  size_t *order = malloc(N * sizeof *order);
  uintptr_t (*span)[2] = malloc(N * sizeof *span);
  assert_non_null(block);
  assert_non_null(size);
  assert_non_null(order);
  assert_non_null(span);
  rng_state = 0xC0FFEE1234ull;
  for (size_t i = 0; i < N; i++) {
    /* Mostly small, a tail of big ones, up to 1 MiB. */
    size[i] = rng_below(10) == 0 ? rng_log_size(16 * KiB, 1 * MiB) : rng_log_size(16, 16 * KiB);
    block[i] = malloc(opaque_size(size[i]));
    assert_non_null(block[i]);
    assert_true(is_aligned(block[i], 16));
    fill(block[i], size[i], i);
  }
  /* No two blocks overlap. */
  for (size_t i = 0; i < N; i++) {
    span[i][0] = (uintptr_t)block[i];
    span[i][1] = (uintptr_t)block[i] + size[i];
  }
  qsort(span, N, sizeof span[0], compare_uintptr);
  for (size_t i = 1; i < N; i++) assert_true(span[i - 1][1] <= span[i][0]);
  /* Nothing was overwritten while the others were made. */
  for (size_t i = 0; i < N; i++) assert_pattern(block[i], size[i], i);
  /* Free in random order; halfway, the survivors are still intact. */
  for (size_t i = 0; i < N; i++) order[i] = i;
  for (size_t i = N - 1; i > 0; i--) {
    size_t j = rng_below(i + 1);
    size_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (size_t k = 0; k < N; k++) {
    size_t i = order[k];
    assert_pattern(block[i], size[i], i);
    free(block[i]);
    block[i] = NULL;
    if (k == N / 2) {
      for (size_t m = 0; m < N; m++)
        if (block[m] != NULL) assert_pattern(block[m], size[m], m);
    }
  }
  free(block);
  free(size);
  free(order);
  free(span);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_malloc_zero_unique),
    cmocka_unit_test(test_alignment_small_sizes),
    cmocka_unit_test(test_alignment_large_sizes),
    cmocka_unit_test(test_malloc_enomem),
    cmocka_unit_test(test_calloc_overflow),
    cmocka_unit_test(test_reallocarray_overflow),
    cmocka_unit_test(test_pvalloc_overflow),
    cmocka_unit_test(test_realloc_failure_keeps_block),
    cmocka_unit_test(test_posix_memalign_einval),
    cmocka_unit_test(test_posix_memalign_alignments),
    cmocka_unit_test(test_overaligned_blocks),
    cmocka_unit_test(test_aligned_alloc_einval),
    cmocka_unit_test(test_aligned_alloc_memalign_many),
    cmocka_unit_test(test_memalign_rounds_up),
    cmocka_unit_test(test_valloc_pvalloc),
    cmocka_unit_test(test_realloc_null_is_malloc),
    cmocka_unit_test(test_realloc_zero_frees),
    cmocka_unit_test(test_realloc_small_to_small),
    cmocka_unit_test(test_realloc_small_to_large),
    cmocka_unit_test(test_realloc_large_grow),
    cmocka_unit_test(test_realloc_large_to_small),
    cmocka_unit_test(test_realloc_random),
    cmocka_unit_test(test_free_null),
    cmocka_unit_test(test_errno_preserved),
    cmocka_unit_test(test_calloc_zero_small),
    cmocka_unit_test(test_calloc_zero_large),
    cmocka_unit_test(test_usable_size),
    cmocka_unit_test(test_reallocarray_normal),
    cmocka_unit_test(test_cfree),
    cmocka_unit_test(test_free_sized),
    cmocka_unit_test(test_free_aligned_sized),
    cmocka_unit_test(test_libc_internal_names),
    cmocka_unit_test(test_mallinfo2_large),
    cmocka_unit_test(test_mallinfo_clamps),
    cmocka_unit_test(test_mallopt),
    cmocka_unit_test(test_malloc_stats),
    cmocka_unit_test(test_version),
    cmocka_unit_test(test_many_live_blocks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

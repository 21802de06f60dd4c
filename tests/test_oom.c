/*
 * test_oom.c: running out of memory.  Linked against the static library and
 * built INTERNAL, so it can inject failures with os_fail_after() from os.h:
 * after N more successful reservations every reservation fails as if the
 * kernel refused memory.
 *
 *   - every allocation call that needs new memory fails cleanly: NULL and
 *     errno ENOMEM (posix_memalign: returns ENOMEM, *memptr untouched);
 *   - realloc that needs new memory fails and leaves the old block intact;
 *   - a failed small malloc leaves no stale slab behind its fast path;
 *   - after injection stops, allocation works again;
 *   - failures leave the statistics and the other calls working, and errno
 *     is set only on failure;
 *   - failures at every depth of a mixed workload (heap, segment, slab,
 *     large object, remap) leave the allocator consistent.
 *
 * cmocka itself calls malloc: injection is switched on only around the calls
 * under test, and results are asserted after it is switched off.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "os.h"

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

/* A size in the biggest class of four blocks to a slab (229,376-byte
 * blocks, four to a 1 MiB slab): each new slab of it needs 16 free pages. */
#define BIG_SMALL_SIZE ((size_t)200000)

/* Called through a pointer: gcc treats reallocarray as a builtin and would
 * warn that the block is used after a (here failing) reallocarray. */
static void *(*volatile reallocarray_fn)(void *, size_t, size_t) = reallocarray;

static void fill(void *p, size_t size, unsigned seed) {
  uint8_t *b = p;
  for (size_t i = 0; i < size; i++) b[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static bool intact(const void *p, size_t size, unsigned seed) {
  const uint8_t *b = p;
  for (size_t i = 0; i < size; i++)
    if (b[i] != (uint8_t)(seed + i * 7 + (i >> 9))) return false;
  return true;
}

/* Start from a trimmed allocator: no cached segment or large mapping can
 * satisfy a request without a reservation. */
static int trim_before(void **state) {
  (void)state;
  os_fail_after(-1);
  malloc_trim(0);
  return 0;
}

/* Never leave injection on for cmocka, whatever a test did. */
static int injection_off(void **state) {
  (void)state;
  os_fail_after(-1);
  return 0;
}

/* ---- large requests ------------------------------------------------------ */

typedef struct {
  void *p;
  int err;
} outcome_t;

#define EXPECT_ENOMEM(o, what)                                                       \
  do {                                                                              \
    if ((o).p != NULL) fail_msg("%s succeeded while reservations fail", what);       \
    if ((o).err != ENOMEM) fail_msg("%s: errno %d, expected ENOMEM", what, (o).err); \
  } while (0)

static void test_large_requests_fail_with_enomem(void **state) {
  (void)state;
  outcome_t o[11];
  void *pm = (void *)&o; /* posix_memalign must leave it alone */
  void *pm_big = (void *)&o;
  int pm_big_ret;
  int pm_ret, pm_errno;
  size_t mapped_before = os_mapped_bytes();
  struct mallinfo2 m0 = mallinfo2();

  os_fail_after(0);
  errno = 0; o[0].p = malloc(1536 * KiB); o[0].err = errno;
  errno = 0; o[1].p = calloc(1, 1536 * KiB); o[1].err = errno;
  errno = 0; o[2].p = calloc(3, 500 * KiB); o[2].err = errno;
  errno = 0; o[3].p = aligned_alloc(4096, 2 * MiB); o[3].err = errno;
  errno = 0; o[4].p = aligned_alloc(1 * MiB, 64); o[4].err = errno; /* alignment above a slab page */
  errno = 0; o[5].p = memalign(256 * KiB, 300 * KiB); o[5].err = errno;
  errno = 0; o[6].p = realloc(NULL, 3 * MiB); o[6].err = errno;
  errno = 0; o[7].p = valloc(2 * MiB); o[7].err = errno;
  errno = 0; o[8].p = pvalloc(1500 * KiB); o[8].err = errno;
  errno = 0; o[9].p = reallocarray_fn(NULL, 1000, 2000); o[9].err = errno;
  errno = 0; o[10].p = aligned_alloc(8 * MiB, 1000); o[10].err = errno; /* above half a segment */
  errno = EINTR; pm_ret = posix_memalign(&pm, 64, 2 * MiB); pm_errno = errno;
  pm_big_ret = posix_memalign(&pm_big, 16 * MiB, 100);
  os_fail_after(-1);

  EXPECT_ENOMEM(o[0], "malloc(1536 KiB)");
  EXPECT_ENOMEM(o[1], "calloc(1, 1536 KiB)");
  EXPECT_ENOMEM(o[2], "calloc(3, 500 KiB)");
  EXPECT_ENOMEM(o[3], "aligned_alloc(4096, 2 MiB)");
  EXPECT_ENOMEM(o[4], "aligned_alloc(1 MiB, 64)");
  EXPECT_ENOMEM(o[5], "memalign(256 KiB, 300 KiB)");
  EXPECT_ENOMEM(o[6], "realloc(NULL, 3 MiB)");
  EXPECT_ENOMEM(o[7], "valloc(2 MiB)");
  EXPECT_ENOMEM(o[8], "pvalloc(1500 KiB)");
  EXPECT_ENOMEM(o[9], "reallocarray(NULL, 1000, 2000)");
  EXPECT_ENOMEM(o[10], "aligned_alloc(8 MiB, 1000)");
  assert_int_equal(pm_big_ret, ENOMEM);
  assert_ptr_equal(pm_big, (void *)&o);
  assert_int_equal(pm_ret, ENOMEM);
  assert_ptr_equal(pm, (void *)&o); /* *memptr untouched */
  assert_int_equal(pm_errno, EINTR); /* the result reports, errno is left alone */

  /* Nothing was mapped, nothing counted. */
  struct mallinfo2 m1 = mallinfo2();
  assert_int_equal(os_mapped_bytes(), mapped_before);
  assert_int_equal(m1.hblks, m0.hblks);
  assert_int_equal(m1.hblkhd, m0.hblkhd);
  assert_int_equal(m1.uordblks, m0.uordblks);

  /* Injection off: the same calls work. */
  void *ok[11];
  ok[0] = malloc(1536 * KiB);
  ok[1] = calloc(1, 1536 * KiB);
  ok[2] = calloc(3, 500 * KiB);
  ok[3] = aligned_alloc(4096, 2 * MiB);
  ok[4] = aligned_alloc(1 * MiB, 64);
  ok[5] = memalign(256 * KiB, 300 * KiB);
  ok[6] = realloc(NULL, 3 * MiB);
  ok[7] = valloc(2 * MiB);
  ok[8] = pvalloc(1500 * KiB);
  ok[9] = reallocarray_fn(NULL, 1000, 2000);
  ok[10] = aligned_alloc(8 * MiB, 1000);
  for (int i = 0; i < 11; i++) assert_non_null(ok[i]);
  assert_int_equal((uintptr_t)ok[10] % (8 * MiB), 0);
  memset(ok[10], 1, 1000);
  assert_int_equal((uintptr_t)ok[3] % 4096, 0);
  assert_int_equal((uintptr_t)ok[4] % MiB, 0);
  assert_int_equal((uintptr_t)ok[5] % (256 * KiB), 0);
  const uint8_t *z = ok[2];
  for (size_t i = 0; i < 1500 * KiB; i += 511) assert_int_equal(z[i], 0);
  assert_int_equal(posix_memalign(&pm, 64, 2 * MiB), 0);
  assert_non_null(pm);
  assert_int_equal((uintptr_t)pm % 64, 0);
  free(pm);
  assert_int_equal(posix_memalign(&pm_big, 16 * MiB, 100), 0);
  assert_int_equal((uintptr_t)pm_big % (16 * MiB), 0);
  free(pm_big);
  for (int i = 0; i < 11; i++) free(ok[i]);
}

/* ---- small requests in a thread with no memory yet ---------------------- */

#define FT_CALLS 9

typedef struct {
  outcome_t o[FT_CALLS];
  int pm_ret;
  void *pm;
  void *after[FT_CALLS];
  bool after_ok;
} fresh_thread_t;

static void *fresh_thread_main(void *argp) {
  fresh_thread_t *r = argp;
  outcome_t *o = r->o;
  r->pm = (void *)r;
  /* The thread's first allocation: it has no heap yet (or adopts an exited
   * thread's heap, which the trim left without segments), so every size
   * needs a reservation. */
  os_fail_after(0);
  errno = 0; o[0].p = malloc(64); o[0].err = errno;
  errno = 0; o[1].p = malloc(1); o[1].err = errno;
  errno = 0; o[2].p = calloc(4, 16); o[2].err = errno;
  errno = 0; o[3].p = realloc(NULL, 100); o[3].err = errno;
  errno = 0; o[4].p = aligned_alloc(256, 256); o[4].err = errno;
  errno = 0; o[5].p = memalign(32, 1000); o[5].err = errno;
  errno = 0; o[6].p = malloc(BIG_SMALL_SIZE); o[6].err = errno;
  errno = 0; o[7].p = calloc(1, 5000); o[7].err = errno;
  errno = 0; o[8].p = malloc(0); o[8].err = errno;
  r->pm_ret = posix_memalign(&r->pm, 128, 48);
  os_fail_after(-1);

  /* And now everything works. */
  size_t sizes[FT_CALLS] = { 64, 1, 64, 100, 256, 1000, BIG_SMALL_SIZE, 5000, 0 };
  r->after_ok = true;
  for (int i = 0; i < FT_CALLS; i++) {
    r->after[i] = malloc(sizes[i]);
    if (r->after[i] == NULL) r->after_ok = false;
    else fill(r->after[i], sizes[i], (unsigned)i);
  }
  for (int i = 0; i < FT_CALLS; i++) {
    if (r->after[i] != NULL && !intact(r->after[i], sizes[i], (unsigned)i)) r->after_ok = false;
    free(r->after[i]);
  }
  return NULL;
}

static void test_small_requests_fail_in_fresh_thread(void **state) {
  (void)state;
  static fresh_thread_t r;
  memset(&r, 0, sizeof r);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fresh_thread_main, &r), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  static const char *what[FT_CALLS] = {
    "malloc(64)", "malloc(1)", "calloc(4, 16)", "realloc(NULL, 100)", "aligned_alloc(256, 256)",
    "memalign(32, 1000)", "malloc(200000)", "calloc(1, 5000)", "malloc(0)",
  };
  for (int i = 0; i < FT_CALLS; i++) EXPECT_ENOMEM(r.o[i], what[i]);
  assert_int_equal(r.pm_ret, ENOMEM);
  assert_ptr_equal(r.pm, (void *)&r);
  assert_true(r.after_ok);
}

/* ---- small requests once the heap's segments are full ------------------- */

#define EXHAUST_MAX 8192

static void test_small_requests_fail_once_segments_are_full(void **state) {
  (void)state;
  static void *blocks[EXHAUST_MAX];
  size_t n = 0;
  int err = 0;
  /* A block that realloc will try to move into the exhausted class. */
  uint8_t *small = malloc(100);
  assert_non_null(small);
  fill(small, 100, 9);
  size_t small_usable = malloc_usable_size(small);

  os_fail_after(0);
  for (n = 0; n < EXHAUST_MAX; n++) {
    errno = 0;
    blocks[n] = malloc(BIG_SMALL_SIZE);
    if (blocks[n] == NULL) {
      err = errno;
      break;
    }
  }
  /* The class is exhausted and no segment can be added: every request for
   * it fails, whichever call makes it. */
  errno = 0;
  void *c = calloc(1, BIG_SMALL_SIZE);
  int c_err = errno;
  errno = 0;
  void *a = aligned_alloc(4096, BIG_SMALL_SIZE);
  int a_err = errno;
  void *pm = &pm;
  int pm_ret = posix_memalign(&pm, 64, BIG_SMALL_SIZE);
  errno = 0;
  void *r = realloc(small, BIG_SMALL_SIZE);
  int r_err = errno;
  os_fail_after(-1);

  print_message("%zu blocks of %zu bytes before the first failure\n", n, BIG_SMALL_SIZE);
  assert_true(n < EXHAUST_MAX);
  assert_null(blocks[n]);
  assert_int_equal(err, ENOMEM);
  assert_null(c);
  assert_int_equal(c_err, ENOMEM);
  assert_null(a);
  assert_int_equal(a_err, ENOMEM);
  assert_int_equal(pm_ret, ENOMEM);
  assert_ptr_equal(pm, &pm);
  assert_null(r);
  assert_int_equal(r_err, ENOMEM);
  /* The block realloc could not move is intact and still ours. */
  assert_true(intact(small, 100, 9));
  assert_int_equal(malloc_usable_size(small), small_usable);

  /* The blocks that were handed out are distinct and usable. */
  for (size_t i = 0; i < n; i++) {
    memset(blocks[i], (int)(i & 0xff), 64);
    memset((uint8_t *)blocks[i] + BIG_SMALL_SIZE - 64, (int)(i & 0xff), 64);
  }
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(((uint8_t *)blocks[i])[0], i & 0xff);
    assert_int_equal(((uint8_t *)blocks[i])[BIG_SMALL_SIZE - 1], i & 0xff);
  }

  /* With memory again, the class grows and realloc moves the block. */
  void *more = malloc(BIG_SMALL_SIZE);
  assert_non_null(more);
  uint8_t *moved = realloc(small, BIG_SMALL_SIZE);
  assert_non_null(moved);
  assert_true(intact(moved, 100, 9));
  free(moved);
  free(more);
  for (size_t i = 0; i < n; i++) free(blocks[i]);
}

/* ---- the heap stays consistent after a failed small malloc --------------
 * When a class runs out, the allocator parks its full slabs and then fails
 * to get a new one.  Those parked slabs must not stay reachable from the
 * fast path: once one of them is emptied and its page taken by a slab of
 * another class, a stale fast-path slot would hand out blocks of the wrong
 * size. */

#define SF_MAX 70000

typedef struct {
  size_t exhausted_after; /* 64-byte blocks handed out before the failure */
  int fail_errno;
  size_t usable16, usable64[8];
  bool overlap;
} stale_result_t;

static void *stale_slot_thread(void *argp) {
  stale_result_t *res = argp;
  static void *blocks[SF_MAX];
  void *first = malloc(64); /* with memory: the thread's heap gets a segment */
  size_t n = 0;
  os_fail_after(0); /* from now on, only the pages of that segment */
  while (n < SF_MAX && (blocks[n] = malloc(64)) != NULL) n++;
  res->fail_errno = errno;
  res->exhausted_after = n;
  if (first == NULL || n == 0 || n == SF_MAX) {
    os_fail_after(-1);
    return NULL;
  }
  /* Unpark the first slab, then empty the slab that was current when malloc
   * failed: its page goes back to the segment. */
  free(first);
  uintptr_t last_page = (uintptr_t)blocks[n - 1] >> GPA_PAGE_SHIFT;
  for (size_t i = 0; i < n; i++) {
    if ((uintptr_t)blocks[i] >> GPA_PAGE_SHIFT == last_page) {
      free(blocks[i]);
      blocks[i] = NULL;
    }
  }
  /* A 16-byte slab takes that page (the segment's only free one). */
  uint8_t *small = malloc(16);
  os_fail_after(-1);
  /* Memory again: 64-byte requests must get 64-byte blocks. */
  uint8_t *big[8];
  for (int i = 0; i < 8; i++) big[i] = malloc(64);
  res->usable16 = small ? malloc_usable_size(small) : 0;
  for (int i = 0; i < 8; i++) {
    res->usable64[i] = big[i] ? malloc_usable_size(big[i]) : 0;
    /* 64-byte blocks must not overlap the 16-byte one */
    if (small && big[i] && (uintptr_t)big[i] < (uintptr_t)small + 16 && (uintptr_t)small < (uintptr_t)big[i] + 64)
      res->overlap = true;
  }
  free(small);
  for (int i = 0; i < 8; i++) free(big[i]);
  for (size_t i = 0; i < n; i++) free(blocks[i]);
  return NULL;
}

static void test_failed_malloc_leaves_no_stale_slab(void **state) {
  (void)state;
  static stale_result_t res;
  memset(&res, 0, sizeof res);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, stale_slot_thread, &res), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  print_message("%zu blocks of 64 bytes before the failure\n", res.exhausted_after);
  assert_true(res.exhausted_after > 0 && res.exhausted_after < SF_MAX);
  assert_int_equal(res.fail_errno, ENOMEM);
  assert_true(res.usable16 >= 16);
  for (int i = 0; i < 8; i++) {
    if (res.usable64[i] == 0) fail_msg("malloc(64) returned NULL after injection stopped");
    if (res.usable64[i] < 64)
      fail_msg("after a failed malloc, malloc(64) returned a block of %zu usable bytes", res.usable64[i]);
  }
  assert_false(res.overlap);
}

/* ---- realloc that cannot get memory ------------------------------------- */

static void test_realloc_failure_keeps_the_block(void **state) {
  (void)state;
  /* small -> large */
  uint8_t *s = malloc(300);
  assert_non_null(s);
  fill(s, 300, 1);
  /* large -> larger (no room to grow in place: a second mapping follows) */
  size_t lsize = 1536 * KiB;
  uint8_t *l = malloc(lsize);
  assert_non_null(l);
  fill(l, lsize, 2);
  void *guard = malloc(lsize); /* likely right after `l`, blocking in-place growth */
  assert_non_null(guard);
  size_t l_usable = malloc_usable_size(l);
  struct mallinfo2 m0 = mallinfo2();

  os_fail_after(0);
  errno = 0;
  void *s2 = realloc(s, 2 * MiB);
  int s2_err = errno;
  errno = 0;
  void *l2 = realloc(l, 64 * MiB);
  int l2_err = errno;
  errno = 0;
  void *l3 = reallocarray_fn(l, 16, MiB);
  int l3_err = errno;
  os_fail_after(-1);

  assert_null(s2);
  assert_int_equal(s2_err, ENOMEM);
  assert_null(l2);
  assert_int_equal(l2_err, ENOMEM);
  assert_null(l3);
  assert_int_equal(l3_err, ENOMEM);
  assert_true(intact(s, 300, 1));
  assert_true(intact(l, lsize, 2));
  assert_int_equal(malloc_usable_size(l), l_usable);
  struct mallinfo2 m1 = mallinfo2();
  assert_int_equal(m1.hblks, m0.hblks);
  assert_int_equal(m1.uordblks, m0.uordblks); /* the failed resize changed no figure */
  assert_int_equal(m1.hblkhd, m0.hblkhd);

  /* Shrinking needs no new memory: it works even now. */
  os_fail_after(0);
  errno = 0;
  uint8_t *l4 = realloc(l, 1280 * KiB); /* still large */
  int l4_err = errno;
  os_fail_after(-1);
  assert_non_null(l4);
  assert_int_equal(l4_err, 0);
  assert_true(intact(l4, 1280 * KiB, 2));

  /* With memory again both grow and keep their contents. */
  uint8_t *s3 = realloc(s, 2 * MiB);
  assert_non_null(s3);
  assert_true(intact(s3, 300, 1));
  uint8_t *l5 = realloc(l4, 64 * MiB);
  assert_non_null(l5);
  assert_true(intact(l5, 1280 * KiB, 2));
  l5[64 * MiB - 1] = 1;
  free(s3);
  free(l5);
  free(guard);
}

/* ---- errno, statistics and other calls around failures ------------------- */

static void test_errno_set_only_on_failure(void **state) {
  (void)state;
  /* Successful calls leave errno alone, whatever it holds. */
  errno = 12345;
  void *a = malloc(64);
  void *b = malloc(2 * MiB); /* a fresh mapping: the trim emptied the cache */
  void *c = calloc(10, 10);
  void *d = realloc(NULL, 5000);
  d = realloc(d, 50000);
  void *e = aligned_alloc(4096, 8192);
  void *f = NULL;
  int pm = posix_memalign(&f, 32, 100);
  free(a);
  free(b);
  free(c);
  free(d);
  free(e);
  free(f);
  malloc_trim(0);
  (void)mallinfo2();
  int saved = errno;
  assert_int_equal(pm, 0);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  assert_non_null(d);
  assert_non_null(e);
  assert_non_null(f);
  assert_int_equal(saved, 12345);

  /* One reservation left: the first request that needs one succeeds and
   * leaves errno alone, the next fails with ENOMEM. */
  os_fail_after(1);
  errno = 0;
  void *g = malloc(3 * MiB);
  int g_err = errno;
  errno = 0;
  void *h = malloc(3 * MiB);
  int h_err = errno;
  os_fail_after(-1);
  assert_non_null(g);
  assert_int_equal(g_err, 0);
  assert_null(h);
  assert_int_equal(h_err, ENOMEM);
  memset(g, 1, 3 * MiB);
  free(g);

  /* A failure does not poison the next success.  The trim empties the
   * large cache, which could otherwise serve the request without the
   * kernel. */
  malloc_trim(0);
  os_fail_after(0);
  void *i = malloc(2 * MiB);
  os_fail_after(-1);
  assert_null(i);
  errno = 0;
  void *j = malloc(2 * MiB);
  assert_non_null(j);
  assert_int_equal(errno, 0);
  free(j);

  /* Overflowing requests fail with ENOMEM with no injection at all. */
  volatile size_t huge = SIZE_MAX - 4096, half = SIZE_MAX / 2;
  errno = 0;
  assert_null(calloc(half, 3));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(malloc(huge));
  assert_int_equal(errno, ENOMEM);
}

static void test_other_calls_work_after_failures(void **state) {
  (void)state;
  void *live_small = malloc(48);
  void *live_large = malloc(2 * MiB);
  assert_non_null(live_small);
  assert_non_null(live_large);
  struct mallinfo2 m0 = mallinfo2();

  os_fail_after(0);
  void *x = malloc(4 * MiB);
  void *y = calloc(1, 3 * MiB);
  /* With injection still on, calls that need no new memory work. */
  struct mallinfo2 m1 = mallinfo2();
  size_t us_small = malloc_usable_size(live_small);
  size_t us_large = malloc_usable_size(live_large);
  int opt = mallopt(M_MMAP_THRESHOLD, 1 << 20);
  void *again = malloc(48); /* the live block's slab has room */
  free(again);
  os_fail_after(-1);

  assert_null(x);
  assert_null(y);
  assert_int_equal(m1.hblks, m0.hblks);
  assert_int_equal(m1.hblkhd, m0.hblkhd);
  assert_int_equal(m1.uordblks, m0.uordblks);
  assert_int_equal(m1.arena, m0.arena);
  assert_true(us_small >= 48);
  assert_true(us_large >= 2 * MiB);
  assert_int_equal(opt, 1);
  assert_non_null(again);

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo mi = mallinfo();
#pragma GCC diagnostic pop
  assert_int_equal((size_t)mi.hblks, m0.hblks);
  malloc_stats(); /* writes to stderr; must not crash */
  int t = malloc_trim(0);
  assert_true(t == 0 || t == 1);

  free(live_small);
  free(live_large);
  struct mallinfo2 m2 = mallinfo2();
  assert_int_equal(m2.hblks, m0.hblks - 1);
}

/* ---- failures at every depth of a mixed workload ------------------------- */

#define SWEEP_OPS 400
#define SWEEP_DEPTHS 24

typedef struct {
  long depth;
  unsigned failures, successes, bad_errno, corrupt, after_fail;
} sweep_t;

static size_t sweep_size(unsigned i) {
  switch (i % 8) {
  case 0: return 16 + (i * 37) % 1000;
  case 1: return 1000 + (i * 997) % 15000;
  case 2: return 64 * KiB + (i * 4099) % (190 * KiB);
  case 3: return 300 * KiB + (i * 65537) % (3 * MiB);
  case 4: return 8 + i % 120;
  case 5: return 2048 + (i * 131) % 6000;
  case 6: return 100 * KiB + (i * 12345) % (150 * KiB);
  default: return 40 + (i * 29) % 400;
  }
}

typedef struct {
  uint8_t *p;
  size_t size;
} sweep_block_t;

static void *sweep_thread(void *argp) {
  sweep_t *s = argp;
  static __thread sweep_block_t blocks[SWEEP_OPS];
  memset(blocks, 0, sizeof blocks);
  os_fail_after(s->depth);
  for (unsigned i = 0; i < SWEEP_OPS; i++) {
    size_t size = sweep_size(i + (unsigned)s->depth);
    sweep_block_t *b = &blocks[i];
    errno = 0;
    if (i % 5 == 4 && blocks[i - 1].p != NULL) {
      /* Grow the previous block. */
      sweep_block_t *prev = &blocks[i - 1];
      size_t bigger = prev->size * 3 + 1000;
      uint8_t *q = realloc(prev->p, bigger);
      if (q == NULL) {
        s->failures++;
        if (errno != ENOMEM) s->bad_errno++;
        if (!intact(prev->p, prev->size < 4096 ? prev->size : 4096, (unsigned)i - 1)) s->corrupt++;
      } else {
        s->successes++;
        if (!intact(q, prev->size < 4096 ? prev->size : 4096, (unsigned)i - 1)) s->corrupt++;
        prev->p = q;
        prev->size = bigger;
        fill(q, bigger < 4096 ? bigger : 4096, (unsigned)i - 1);
      }
      continue;
    }
    switch (i % 3) {
    case 0: b->p = malloc(size); break;
    case 1: b->p = calloc(1, size); break;
    default: b->p = aligned_alloc(64 << (i % 4), size); break;
    }
    if (b->p == NULL) {
      s->failures++;
      if (errno != ENOMEM) s->bad_errno++;
      continue;
    }
    s->successes++;
    if (i % 3 == 1) {
      for (size_t k = 0; k < size; k += 997)
        if (b->p[k] != 0) s->corrupt++;
    }
    b->size = size;
    fill(b->p, size < 4096 ? size : 4096, i);
    if (i % 7 == 3) { /* free some as we go */
      free(b->p);
      b->p = NULL;
    }
  }
  os_fail_after(-1);
  for (unsigned i = 0; i < SWEEP_OPS; i++) {
    if (blocks[i].p == NULL) continue;
    if (!intact(blocks[i].p, blocks[i].size < 4096 ? blocks[i].size : 4096, i)) s->corrupt++;
    free(blocks[i].p);
    blocks[i].p = NULL;
  }
  /* Memory again: the same workload succeeds in full. */
  for (unsigned i = 0; i < SWEEP_OPS; i++) {
    size_t size = sweep_size(i);
    blocks[i].p = malloc(size);
    if (blocks[i].p == NULL) {
      s->after_fail++;
      continue;
    }
    fill(blocks[i].p, size < 4096 ? size : 4096, i);
    blocks[i].size = size;
  }
  for (unsigned i = 0; i < SWEEP_OPS; i++) {
    if (blocks[i].p == NULL) continue;
    if (!intact(blocks[i].p, blocks[i].size < 4096 ? blocks[i].size : 4096, i)) s->corrupt++;
    free(blocks[i].p);
  }
  return NULL;
}

static void test_failures_at_every_depth(void **state) {
  (void)state;
  unsigned total_failures = 0;
  for (long depth = 0; depth < SWEEP_DEPTHS; depth++) {
    malloc_trim(0); /* each run starts with empty caches */
    sweep_t s = { .depth = depth };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sweep_thread, &s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (s.bad_errno || s.corrupt || s.after_fail)
      fail_msg("depth %ld: %u failures with errno not ENOMEM, %u corrupt blocks, %u failures after injection "
               "stopped", depth, s.bad_errno, s.corrupt, s.after_fail);
    assert_true(s.failures > 0); /* the workload needs more than 24 reservations */
    total_failures += s.failures;
    /* The main thread is unaffected. */
    void *p = malloc(1000), *q = malloc(1 * MiB);
    assert_non_null(p);
    assert_non_null(q);
    free(p);
    free(q);
  }
  print_message("%u injected failures over %d depths\n", total_failures, SWEEP_DEPTHS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_large_requests_fail_with_enomem, trim_before, injection_off),
    cmocka_unit_test_setup_teardown(test_small_requests_fail_in_fresh_thread, trim_before, injection_off),
    cmocka_unit_test_setup_teardown(test_small_requests_fail_once_segments_are_full, trim_before, injection_off),
    cmocka_unit_test_setup_teardown(test_failed_malloc_leaves_no_stale_slab, trim_before, injection_off),
    cmocka_unit_test_setup_teardown(test_realloc_failure_keeps_the_block, trim_before, injection_off),
    cmocka_unit_test_setup_teardown(test_errno_set_only_on_failure, trim_before, injection_off),
    cmocka_unit_test_setup_teardown(test_other_calls_work_after_failures, trim_before, injection_off),
    cmocka_unit_test_setup_teardown(test_failures_at_every_depth, trim_before, injection_off),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

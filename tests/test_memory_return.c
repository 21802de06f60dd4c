/*
 * test_memory_return.c: freed memory leaves the process.  Linked against the
 * shared library.
 *
 *   - freeing ~256 MiB of small blocks, or 200 MiB of large ones, lowers the
 *     resident set without malloc_trim; so does freeing all but a few
 *     scattered blocks, and four live threads freeing medium blocks;
 *   - malloc_trim(0) hands back what is left (the calling thread's empty
 *     slabs, those of exited threads' heaps, the segment and large caches);
 *   - mallinfo2 follows allocations and frees;
 *   - a block grown by realloc from 1 KiB to 64 MiB keeps its contents and
 *     leaves nothing resident once freed.
 *
 * The test's own bookkeeping (pointer arrays) lives in mmap'ed memory, so
 * that only the blocks under test go through the allocator.
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)


static size_t diff(size_t a, size_t b) { return a > b ? a - b : 0; }

/* Bookkeeping memory outside the allocator, touched so it is resident
 * before any baseline is taken. */
static void *table_map(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  memset(p, 0, bytes);
  return p;
}

static void table_unmap(void *p, size_t bytes) { munmap(p, bytes); }

/* A block's first and last 8 bytes, and one byte per 4 KiB page, name it;
 * writing them also makes every page of it resident. */
static void block_mark(uint8_t *p, size_t size, uintptr_t tag) {
  if (size >= 16) {
    memcpy(p, &tag, 8);
    memcpy(p + size - 8, &tag, 8);
  } else {
    p[0] = (uint8_t)tag;
  }
  for (size_t off = 4096; off < size; off += 4096) p[off] = (uint8_t)(tag + off / 4096);
}

static bool block_marked(const uint8_t *p, size_t size, uintptr_t tag) {
  if (size >= 16) {
    uintptr_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + size - 8, 8);
    if (a != tag || b != tag) return false;
  } else if (p[0] != (uint8_t)tag) {
    return false;
  }
  for (size_t off = 4096; off < size; off += 4096)
    if (p[off] != (uint8_t)(tag + off / 4096)) return false;
  return true;
}

/* Start each test from a trimmed allocator, so leftovers of an earlier test
 * do not count. */
static int trim_before(void **state) {
  (void)state;
  malloc_trim(0);
  return 0;
}

/* ---- small blocks: RSS falls after free, without malloc_trim ------------ */

#define SMALL_64_COUNT ((size_t)2 * 1024 * 1024)  /* 128 MiB of 64-byte blocks */
#define SMALL_1K_COUNT ((size_t)128 * 1024)       /* 128 MiB of 1 KiB blocks */

static void test_small_blocks_rss_falls_after_free(void **state) {
  (void)state;
  size_t count = SMALL_64_COUNT + SMALL_1K_COUNT;
  size_t table_bytes = count * sizeof(void *);
  void **ptrs = table_map(table_bytes);
  size_t before = rss_bytes();

  for (size_t i = 0; i < count; i++) {
    size_t size = i < SMALL_64_COUNT ? 64 : 1024;
    ptrs[i] = malloc(size);
    assert_non_null(ptrs[i]);
    block_mark(ptrs[i], size, i);
  }
  size_t peak = rss_bytes();
  for (size_t i = 0; i < count; i += 4097) assert_true(block_marked(ptrs[i], i < SMALL_64_COUNT ? 64 : 1024, i));
  /* Free in an interleaved order: neither all of one slab first nor in
   * allocation order. */
  for (size_t phase = 0; phase < 3; phase++)
    for (size_t i = phase; i < count; i += 3) free(ptrs[i]);
  size_t after = rss_bytes();
  table_unmap(ptrs, table_bytes);

  print_message("small: RSS before %zu MiB, peak %zu MiB, after free %zu MiB\n", before / MiB, peak / MiB,
                after / MiB);
  size_t grown = diff(peak, before);
  assert_true(grown >= 200 * MiB); /* the blocks were really resident */
  if (diff(after, before) >= grown / 4)
    fail_msg("after freeing everything RSS is still %zu MiB above the start (peak was +%zu MiB)",
             diff(after, before) / MiB, grown / MiB);
}

/* Most blocks freed, a few scattered ones kept: the emptied slabs of
 * segments that stay in use must be handed back too (once 1 MiB of a
 * segment's pages is dirty), not only whole empty segments. */
static void test_scattered_survivors_do_not_pin_memory(void **state) {
  (void)state;
  size_t count = SMALL_64_COUNT * 2; /* 256 MiB of 64-byte blocks */
  size_t table_bytes = count * sizeof(void *);
  void **ptrs = table_map(table_bytes);
  size_t before = rss_bytes();
  for (size_t i = 0; i < count; i++) {
    ptrs[i] = malloc(64);
    assert_non_null(ptrs[i]);
    block_mark(ptrs[i], 64, i);
  }
  size_t peak = rss_bytes();
  /* Keep one block in 16,384 (one per 16 slabs of 64 KiB): every segment
   * keeps live slabs. */
  const size_t keep_every = 16384;
  for (size_t i = 0; i < count; i++)
    if (i % keep_every != 7) free(ptrs[i]);
  size_t after = rss_bytes();
  for (size_t i = 7; i < count; i += keep_every) {
    assert_true(block_marked(ptrs[i], 64, i));
    free(ptrs[i]);
  }
  table_unmap(ptrs, table_bytes);
  print_message("scattered: RSS before %zu MiB, peak %zu MiB, with 1 block in %zu left %zu MiB\n", before / MiB,
                peak / MiB, keep_every, after / MiB);
  size_t grown = diff(peak, before);
  assert_true(grown >= 200 * MiB);
  /* Kept: 4 of a segment's 63 slab pages, plus under 1 MiB of dirty pages
   * per segment not yet handed back: about 30% at worst. */
  if (diff(after, before) >= grown / 2)
    fail_msg("with 1 block in %zu kept RSS is still %zu MiB above the start (peak was +%zu MiB)", keep_every,
             diff(after, before) / MiB, grown / MiB);
}

/* Medium blocks (multi-page slabs) and several threads: four threads each
 * allocate 48 MiB and free it; RSS is read while they are still alive (their
 * heaps not collected at exit), and without malloc_trim. */
#define MT_THREADS 4
#define MT_PER_THREAD 900 /* about 48 MiB per thread */

typedef struct {
  unsigned index;
  void **ptrs;
  pthread_barrier_t *allocated, *peak_read, *freed, *measured;
  bool ok;
} mt_arg_t;

static size_t mt_size(size_t i) {
  switch (i % 3) {
  case 0: return 40 * KiB;  /* five-page slabs */
  case 1: return 20000;     /* a 20 KiB class */
  default: return 100 * KiB; /* sixteen-page slabs of 112 KiB blocks */
  }
}

static void *mt_main(void *argp) {
  mt_arg_t *a = argp;
  a->ok = true;
  for (size_t i = 0; i < MT_PER_THREAD; i++) {
    a->ptrs[i] = malloc(mt_size(i));
    if (a->ptrs[i] == NULL) {
      a->ok = false;
      break;
    }
    block_mark(a->ptrs[i], mt_size(i), i * 8 + a->index);
  }
  pthread_barrier_wait(a->allocated);
  pthread_barrier_wait(a->peak_read); /* no free before the main thread has read the peak */
  for (size_t i = 0; i < MT_PER_THREAD && a->ptrs[i] != NULL; i++) {
    if (!block_marked(a->ptrs[i], mt_size(i), i * 8 + a->index)) a->ok = false;
    free(a->ptrs[i]);
  }
  pthread_barrier_wait(a->freed);
  pthread_barrier_wait(a->measured); /* stay alive until the main thread has read RSS */
  return NULL;
}

static void test_threads_freeing_their_memory_lower_rss(void **state) {
  (void)state;
  size_t table_bytes = MT_THREADS * MT_PER_THREAD * sizeof(void *);
  void **table = table_map(table_bytes);
  pthread_barrier_t allocated, peak_read, freed, measured;
  pthread_barrier_init(&allocated, NULL, MT_THREADS + 1);
  pthread_barrier_init(&peak_read, NULL, MT_THREADS + 1);
  pthread_barrier_init(&freed, NULL, MT_THREADS + 1);
  pthread_barrier_init(&measured, NULL, MT_THREADS + 1);
  mt_arg_t args[MT_THREADS];
  pthread_t tids[MT_THREADS];
  size_t before = rss_bytes();
  for (unsigned i = 0; i < MT_THREADS; i++) {
    args[i] = (mt_arg_t){ i, table + (size_t)i * MT_PER_THREAD, &allocated, &peak_read, &freed, &measured, false };
    assert_int_equal(pthread_create(&tids[i], NULL, mt_main, &args[i]), 0);
  }
  pthread_barrier_wait(&allocated);
  size_t peak = rss_bytes();
  pthread_barrier_wait(&peak_read);
  pthread_barrier_wait(&freed);
  size_t after = rss_bytes();
  pthread_barrier_wait(&measured);
  for (unsigned i = 0; i < MT_THREADS; i++) assert_int_equal(pthread_join(tids[i], NULL), 0);
  size_t after_exit = rss_bytes();
  pthread_barrier_destroy(&allocated);
  pthread_barrier_destroy(&peak_read);
  pthread_barrier_destroy(&freed);
  pthread_barrier_destroy(&measured);
  table_unmap(table, table_bytes);
  for (unsigned i = 0; i < MT_THREADS; i++) assert_true(args[i].ok);
  print_message("threads: RSS before %zu MiB, peak %zu MiB, after free %zu MiB, after exit %zu MiB\n",
                before / MiB, peak / MiB, after / MiB, after_exit / MiB);
  size_t grown = diff(peak, before);
  assert_true(grown >= 120 * MiB);
  if (diff(after, before) >= grown / 4)
    fail_msg("after four live threads freed their blocks RSS is still %zu MiB above the start (peak +%zu MiB)",
             diff(after, before) / MiB, grown / MiB);
  if (diff(after_exit, before) >= grown / 4)
    fail_msg("after the threads exited RSS is still %zu MiB above the start", diff(after_exit, before) / MiB);
}

/* ---- big blocks: RSS falls after free; the cache keeps <= 32 MiB --------- */

#define BIG_TOTAL (200 * MiB)

/* 200 MiB of `size`-byte blocks, each written whole, then freed: twice. */
static void big_blocks_rss_falls_after_free(size_t size, const char *what) {
  static void *ptrs[BIG_TOTAL / (1 * MiB)];
  size_t count = BIG_TOTAL / size;
  assert_true(count <= sizeof ptrs / sizeof ptrs[0]);
  size_t before = rss_bytes();
  for (size_t i = 0; i < count; i++) {
    ptrs[i] = malloc(size);
    assert_non_null(ptrs[i]);
    block_mark(ptrs[i], size, i);
  }
  size_t peak = rss_bytes();
  for (size_t i = 0; i < count; i++) {
    assert_true(block_marked(ptrs[i], size, i));
    free(ptrs[i]);
  }
  size_t after = rss_bytes();
  print_message("%s: RSS before %zu MiB, peak %zu MiB, after free %zu MiB\n", what, before / MiB, peak / MiB,
                after / MiB);
  size_t grown = diff(peak, before);
  assert_true(grown >= BIG_TOTAL - 10 * MiB);
  /* The large cache may keep up to 32 MiB resident, slabs their dirty
   * pages for a generation (GPA_PURGE_THRESHOLD): allow that and a bit. */
  if (diff(after, before) > 40 * MiB)
    fail_msg("after freeing 200 MiB of %s RSS is still %zu MiB above the start", what, diff(after, before) / MiB);
  /* A second round reuses or returns the same memory: no growth. */
  for (size_t i = 0; i < count; i++) {
    ptrs[i] = malloc(size);
    assert_non_null(ptrs[i]);
    block_mark(ptrs[i], size, i + 1000);
  }
  for (size_t i = 0; i < count; i++) {
    assert_true(block_marked(ptrs[i], size, i + 1000));
    free(ptrs[i]);
  }
  size_t after2 = rss_bytes();
  if (diff(after2, before) > 40 * MiB)
    fail_msg("after a second round of 200 MiB RSS is %zu MiB above the start", diff(after2, before) / MiB);
}

/* 1 MiB blocks: the biggest size class, a slab each. */
static void test_slab_blocks_of_1mib_rss_falls_after_free(void **state) {
  (void)state;
  big_blocks_rss_falls_after_free(1 * MiB, "1 MiB blocks in slabs");
}

/* 2 MiB blocks: large blocks, a mapping each. */
static void test_large_blocks_rss_falls_after_free(void **state) {
  (void)state;
  big_blocks_rss_falls_after_free(2 * MiB, "2 MiB large blocks");
}

/* ---- malloc_trim -------------------------------------------------------- */

static void test_malloc_trim_returns_memory(void **state) {
  (void)state;
  size_t count = 512 * 1024; /* 64 MiB of mixed small blocks */
  size_t table_bytes = count * sizeof(void *);
  void **ptrs = table_map(table_bytes);
  size_t before = rss_bytes();
  for (size_t i = 0; i < count; i++) {
    size_t size = 16 + (i % 7) * 32; /* 16..208 bytes, several classes */
    ptrs[i] = malloc(size);
    assert_non_null(ptrs[i]);
    block_mark(ptrs[i], size, i);
  }
  /* Large blocks that the large cache keeps (24 MiB: under its 32 MiB)
   * until malloc_trim flushes it. */
  void *large[4];
  for (int i = 0; i < 4; i++) {
    large[i] = malloc(6 * MiB);
    assert_non_null(large[i]);
    memset(large[i], 0x5a, 6 * MiB);
  }
  size_t peak = rss_bytes();
  for (size_t i = 0; i < count; i++) free(ptrs[i]);
  for (int i = 0; i < 4; i++) free(large[i]);
  size_t after_free = rss_bytes();
  int r1 = malloc_trim(0);
  size_t after_trim = rss_bytes();
  int r2 = malloc_trim(0); /* nothing left: 0 or 1 */
  size_t after_trim2 = rss_bytes();
  table_unmap(ptrs, table_bytes);

  print_message("trim: RSS before %zu KiB, peak %zu KiB, after free %zu KiB, after trim %zu KiB (returned %d, "
                "then %d)\n", before / KiB, peak / KiB, after_free / KiB, after_trim / KiB, r1, r2);
  assert_true(diff(peak, before) >= 80 * MiB);
  assert_int_equal(r1, 1);
  assert_true(r2 == 0 || r2 == 1);
  /* Close to the start: a few MiB of slack for transparent huge pages. */
  if (diff(after_trim, before) > 8 * MiB)
    fail_msg("after malloc_trim RSS is %zu KiB above the start", diff(after_trim, before) / KiB);
  assert_true(after_trim2 <= after_trim + 2 * MiB);
}

/* Blocks of an exited thread, freed by the main thread, sit in the exited
 * heap's remote-free lists until a thread adopts the heap; malloc_trim(0)
 * must release them. */
#define TRIM_POOL_COUNT ((size_t)256 * 1024) /* 64 MiB of 256-byte blocks */

typedef struct {
  void **ptrs;
  bool ok;
} pool_arg_t;

static void *pool_thread(void *argp) {
  pool_arg_t *a = argp;
  a->ok = true;
  for (size_t i = 0; i < TRIM_POOL_COUNT; i++) {
    a->ptrs[i] = malloc(256);
    if (a->ptrs[i] == NULL) {
      a->ok = false;
      return NULL;
    }
    block_mark(a->ptrs[i], 256, i);
  }
  return NULL;
}

static void test_malloc_trim_releases_exited_threads_memory(void **state) {
  (void)state;
  size_t table_bytes = TRIM_POOL_COUNT * sizeof(void *);
  pool_arg_t arg = { table_map(table_bytes), false };
  size_t before = rss_bytes();
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, pool_thread, &arg), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(arg.ok);
  size_t peak = rss_bytes();
  for (size_t i = 0; i < TRIM_POOL_COUNT; i++) {
    assert_true(i % 1024 != 0 || block_marked(arg.ptrs[i], 256, i));
    free(arg.ptrs[i]);
  }
  size_t after_free = rss_bytes();
  assert_int_equal(malloc_trim(0), 1);
  size_t after_trim = rss_bytes();
  table_unmap(arg.ptrs, table_bytes);
  print_message("exited thread: RSS before %zu KiB, peak %zu KiB, after free %zu KiB, after trim %zu KiB\n",
                before / KiB, peak / KiB, after_free / KiB, after_trim / KiB);
  assert_true(diff(peak, before) >= 60 * MiB);
  /* The thread's stack may stay cached by the C library: allow a few MiB. */
  if (diff(after_trim, before) > 12 * MiB)
    fail_msg("after malloc_trim RSS is %zu MiB above the start", diff(after_trim, before) / MiB);
}

/* ---- mallinfo2 ---------------------------------------------------------- */

static void test_mallinfo2_follows_allocations(void **state) {
  (void)state;
  enum { N = 64 * 1024 };
  size_t table_bytes = N * sizeof(void *);
  void **ptrs = table_map(table_bytes);
  struct mallinfo2 m0 = mallinfo2();
  for (size_t i = 0; i < N; i++) {
    ptrs[i] = malloc(128); /* 8 MiB */
    assert_non_null(ptrs[i]);
  }
  void *big1 = malloc(2 * MiB), *big2 = malloc(3 * MiB); /* large: above 1 MiB */
  assert_non_null(big1);
  assert_non_null(big2);
  struct mallinfo2 m1 = mallinfo2();
  print_message("uordblks %zu -> %zu, hblks %zu -> %zu, hblkhd %zu -> %zu, arena %zu -> %zu\n", m0.uordblks,
                m1.uordblks, m0.hblks, m1.hblks, m0.hblkhd, m1.hblkhd, m0.arena, m1.arena);
  /* Small blocks count by slab pages: 8 MiB of blocks fill at least 8 MiB
   * of new slabs, less the room a current slab may already have had. */
  assert_true(m1.uordblks >= m0.uordblks + 8 * MiB + 5 * MiB - 1 * MiB);
  assert_true(m1.uordblks <= m0.uordblks + 2 * (8 * MiB + 5 * MiB)); /* no wild overcount */
  assert_int_equal(m1.hblks, m0.hblks + 2);
  assert_true(m1.hblkhd >= m0.hblkhd + 5 * MiB);
  assert_true(m1.arena + m1.hblkhd >= m1.uordblks); /* what is used is mapped */

  for (size_t i = 0; i < N; i++) free(ptrs[i]);
  free(big1);
  struct mallinfo2 m2 = mallinfo2();
  assert_true(m2.uordblks < m1.uordblks);
  assert_int_equal(m2.hblks, m0.hblks + 1);
  free(big2);
  struct mallinfo2 m3 = mallinfo2();
  print_message("after free: uordblks %zu, hblks %zu, fordblks %zu\n", m3.uordblks, m3.hblks, m3.fordblks);
  assert_true(m3.uordblks < m2.uordblks);
  assert_int_equal(m3.hblks, m0.hblks);
  /* What is left in use is at most a slab or two kept for reuse. */
  assert_true(m3.uordblks <= m0.uordblks + 1 * MiB);

  /* The int version agrees while the figures fit. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo mi = mallinfo();
#pragma GCC diagnostic pop
  struct mallinfo2 m4 = mallinfo2();
  assert_int_equal((size_t)mi.hblks, m4.hblks);
  assert_int_equal((size_t)mi.uordblks, m4.uordblks);
  table_unmap(ptrs, table_bytes);
}

/* ---- realloc growth ----------------------------------------------------- */

static inline uint8_t grow_byte(size_t i) { return (uint8_t)(i * 2654435761u >> 13); }

static void test_realloc_growth_keeps_contents_and_returns_memory(void **state) {
  (void)state;
  size_t before = rss_bytes();
  size_t size = 1 * KiB;
  uint8_t *p = malloc(size);
  assert_non_null(p);
  for (size_t i = 0; i < size; i++) p[i] = grow_byte(i);
  size_t peak = 0;
  while (size < 64 * MiB) {
    size_t next = size * 2;
    uint8_t *q = realloc(p, next);
    assert_non_null(q);
    /* The old contents, every byte, survived the move. */
    for (size_t i = 0; i < size; i++)
      if (q[i] != grow_byte(i)) fail_msg("realloc %zu -> %zu: byte %zu changed", size, next, i);
    for (size_t i = size; i < next; i++) q[i] = grow_byte(i);
    p = q;
    size = next;
    size_t rss = rss_bytes();
    if (rss > peak) peak = rss;
  }
  assert_true(malloc_usable_size(p) >= 64 * MiB);
  free(p);
  size_t after = rss_bytes();
  print_message("realloc: RSS before %zu MiB, peak %zu MiB, after free %zu MiB\n", before / MiB, peak / MiB,
                after / MiB);
  assert_true(diff(peak, before) >= 60 * MiB);
  /* A 64 MiB mapping is too big for the large cache: it must be gone. */
  if (diff(after, before) > 8 * MiB)
    fail_msg("after freeing the 64 MiB block RSS is %zu MiB above the start", diff(after, before) / MiB);
}

/* Shrinking a large block by realloc gives the tail back as well. */
static void test_realloc_shrink_returns_memory(void **state) {
  (void)state;
  size_t before = rss_bytes();
  uint8_t *p = malloc(48 * MiB);
  assert_non_null(p);
  for (size_t i = 0; i < 48 * MiB; i += 4096) p[i] = grow_byte(i);
  size_t peak = rss_bytes();
  uint8_t *q = realloc(p, 1 * MiB);
  assert_non_null(q);
  for (size_t i = 0; i < 1 * MiB; i += 4096) assert_int_equal(q[i], grow_byte(i));
  size_t after = rss_bytes();
  print_message("shrink: RSS before %zu MiB, peak %zu MiB, after shrink %zu MiB\n", before / MiB, peak / MiB,
                after / MiB);
  assert_true(diff(peak, before) >= 44 * MiB);
  if (diff(after, before) > 8 * MiB)
    fail_msg("after shrinking 48 MiB to 1 MiB RSS is %zu MiB above the start", diff(after, before) / MiB);
  free(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_small_blocks_rss_falls_after_free, trim_before),
    cmocka_unit_test_setup(test_scattered_survivors_do_not_pin_memory, trim_before),
    cmocka_unit_test_setup(test_threads_freeing_their_memory_lower_rss, trim_before),
    cmocka_unit_test_setup(test_slab_blocks_of_1mib_rss_falls_after_free, trim_before),
    cmocka_unit_test_setup(test_large_blocks_rss_falls_after_free, trim_before),
    cmocka_unit_test_setup(test_malloc_trim_returns_memory, trim_before),
    cmocka_unit_test_setup(test_malloc_trim_releases_exited_threads_memory, trim_before),
    cmocka_unit_test_setup(test_mallinfo2_follows_allocations, trim_before),
    cmocka_unit_test_setup(test_realloc_growth_keeps_contents_and_returns_memory, trim_before),
    cmocka_unit_test_setup(test_realloc_shrink_returns_memory, trim_before),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

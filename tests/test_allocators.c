/*
 * test_allocators.c: the allocators that sit behind gpa_allocator_t without
 * being the general-purpose instance: the raw calls, the arena, the fixed
 * buffer, the failing allocator, the C library adapter and the growable
 * array.  Backings are the C library adapter, fixed buffers and failing
 * allocators, so nothing here needs a gpa_t.  Every test asserts behaviour
 * that breaks if the point it is named after breaks.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gpa.h"
#include "test_support.h"

#define NATURAL_ALIGNMENT _Alignof(max_align_t)
#define LARGEST_TESTED_ALIGNMENT ((size_t)4096)
#define ERRNO_SENTINEL 12345
#define NEVER SIZE_MAX /* a failing allocator's index that is never reached */

/* ---- helpers ------------------------------------------------------------ */

/* A value the optimiser cannot see through. */
static size_t opaque_size(size_t n) {
  volatile size_t v = n;
  return v;
}

static bool is_aligned(const void *p, size_t alignment) {
  return ((uintptr_t)p & (alignment - 1)) == 0;
}


/* A failing allocator's books balance: everything handed out came back. */
static void assert_balanced(const gpa_failing_t *f) {
  assert_int_equal(f->allocations, f->deallocations);
  assert_int_equal(f->allocated_bytes, f->freed_bytes);
}

/* An arena over a failing allocator that never fails: its counters show
 * every chunk the arena takes and gives back. */
static void arena_over_counter(gpa_arena_t *arena, gpa_failing_t *f) {
  gpa_failing_init(f, gpa_libc_allocator(), NEVER, NEVER);
  gpa_arena_init(arena, gpa_failing_allocator(f));
}

/* An allocator that records the last call it got, then passes it on to its
 * backing (the C library adapter unless a test says otherwise).  It can
 * refuse allocations without touching errno, and overwrite blocks as they
 * are freed so that reading one afterwards shows. */
#define SCRIBBLE_BYTE 0xDD
typedef struct recorder {
  gpa_allocator_t backing;
  size_t calls;
  size_t last_len;
  size_t last_alignment;
  void *last_ret_addr;
  bool refuse;
  bool scribble_on_free;
} recorder_t;

static void record(recorder_t *r, size_t len, size_t alignment, void *ret_addr) {
  r->calls++;
  r->last_len = len;
  r->last_alignment = alignment;
  r->last_ret_addr = ret_addr;
}

static void *recorder_alloc(void *ctx, size_t len, size_t alignment, void *ret_addr) {
  recorder_t *r = ctx;
  record(r, len, alignment, ret_addr);
  if (r->refuse) return NULL;
  return r->backing.vtable->alloc(r->backing.ctx, len, alignment, ret_addr);
}

static bool recorder_resize(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                            void *ret_addr) {
  recorder_t *r = ctx;
  record(r, new_len, alignment, ret_addr);
  return r->backing.vtable->resize(r->backing.ctx, ptr, old_len, alignment, new_len, ret_addr);
}

static void *recorder_remap(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                            void *ret_addr) {
  recorder_t *r = ctx;
  record(r, new_len, alignment, ret_addr);
  return r->backing.vtable->remap(r->backing.ctx, ptr, old_len, alignment, new_len, ret_addr);
}

static void recorder_free(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr) {
  recorder_t *r = ctx;
  record(r, len, alignment, ret_addr);
  if (r->scribble_on_free) memset(ptr, SCRIBBLE_BYTE, len);
  r->backing.vtable->free(r->backing.ctx, ptr, len, alignment, ret_addr);
}

static const gpa_allocator_vtable_t RECORDER_VTABLE = {
    .alloc = recorder_alloc,
    .resize = recorder_resize,
    .remap = recorder_remap,
    .free = recorder_free,
};

static gpa_allocator_t recorder_init(recorder_t *r) {
  *r = (recorder_t){.backing = gpa_libc_allocator()};
  return (gpa_allocator_t){.ctx = r, .vtable = &RECORDER_VTABLE};
}

/* The load address of the object (program or library) holding `addr`. */
static void *object_base(const void *addr) {
  Dl_info info;
  assert_true(dladdr(addr, &info) != 0);
  return info.dli_fbase;
}

/* The recorder's last call came from this test program, not from inside
 * the library that made it. */
static void assert_called_from_here(const recorder_t *r) {
  assert_non_null(r->last_ret_addr);
  const void *this_program = (const void *)assert_called_from_here;
  assert_ptr_equal(object_base(r->last_ret_addr), object_base(this_program));
}

/* ---- raw calls ---------------------------------------------------------- */

static void test_raw_alloc_honours_alignment(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);
  static const size_t lengths[] = {0, 1, 24, 100, 5000};
  for (size_t align = 1; align <= LARGEST_TESTED_ALIGNMENT; align *= 2) {
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
      uint8_t *p = gpa_raw_alloc(a, opaque_size(lengths[i]), align);
      assert_non_null(p);
      assert_true(is_aligned(p, align));
      fill(p, lengths[i], (unsigned)align);
      assert_pattern(p, lengths[i], (unsigned)align);
      gpa_raw_free(a, p, lengths[i], align);
    }
  }
  /* Alignment 0 is the natural one. */
  void *p = gpa_raw_alloc(a, 8, 0);
  assert_non_null(p);
  assert_true(is_aligned(p, NATURAL_ALIGNMENT));
  gpa_raw_free(a, p, 8, 0);
  assert_balanced(&f);
}

static void test_raw_zero_length_and_natural_alignment_reach_vtable(void **state) {
  (void)state;
  recorder_t r;
  gpa_allocator_t a = recorder_init(&r);
  void *p = gpa_raw_alloc(a, 0, 0);
  assert_non_null(p);
  assert_int_equal(r.last_len, 0);
  assert_int_equal(r.last_alignment, NATURAL_ALIGNMENT);
  gpa_raw_free(a, p, 0, 0);
  assert_int_equal(r.last_alignment, NATURAL_ALIGNMENT);
  assert_int_equal(r.calls, 2);
}

static void test_raw_calls_pass_callers_address(void **state) {
  (void)state;
  recorder_t r;
  gpa_allocator_t a = recorder_init(&r);
  char *p = gpa_raw_alloc(a, 32, 0);
  assert_called_from_here(&r);
  r.last_ret_addr = NULL;
  gpa_raw_resize(a, p, 32, 0, 16);
  assert_called_from_here(&r);
  r.last_ret_addr = NULL;
  p = gpa_raw_remap(a, p, 32, 0, 64);
  assert_non_null(p);
  assert_called_from_here(&r);
  r.last_ret_addr = NULL;
  p = gpa_raw_realloc(a, p, 64, 4096, 1, 0);
  assert_non_null(p);
  assert_called_from_here(&r);
  r.last_ret_addr = NULL;
  gpa_raw_free(a, p, 4096, 0);
  assert_called_from_here(&r);
  r.last_ret_addr = NULL;
  char *s = gpa_strdup(a, "x");
  assert_called_from_here(&r);
  gpa_free(a, s, 2);
  r.last_ret_addr = NULL;
  p = gpa_raw_alloc_zeroed(a, 4, 4, 0);
  assert_called_from_here(&r);
  gpa_raw_free(a, p, 16, 0);
}

static void test_raw_rejects_alignment_not_power_of_two(void **state) {
  (void)state;
  recorder_t r;
  gpa_allocator_t a = recorder_init(&r);
  errno = 0;
  assert_null(gpa_raw_alloc(a, 16, 3));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(gpa_raw_alloc_array(a, 2, 8, 12));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(gpa_raw_alloc_zeroed(a, 2, 8, 48));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(gpa_raw_dupe(a, "abc", 3, 6));
  assert_int_equal(errno, EINVAL);

  uint8_t *p = gpa_raw_alloc(a, 16, 0);
  assert_non_null(p);
  fill(p, 16, 1);
  size_t calls_before = r.calls;
  errno = 0;
  assert_false(gpa_raw_resize(a, p, 16, 3, 8));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(gpa_raw_remap(a, p, 16, 3, 64));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(gpa_raw_realloc(a, p, 16, 64, 1, 3));
  assert_int_equal(errno, EINVAL);
  /* None of them reached the allocator, and the block is untouched. */
  assert_int_equal(r.calls, calls_before);
  assert_pattern(p, 16, 1);
  gpa_raw_free(a, p, 16, 0);
}

static void test_raw_array_overflow_is_enomem(void **state) {
  (void)state;
  recorder_t r;
  gpa_allocator_t a = recorder_init(&r);
  size_t half = opaque_size(SIZE_MAX / 2 + 1);
  errno = 0;
  assert_null(gpa_raw_alloc_array(a, half, 2, 0));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(gpa_raw_alloc_zeroed(a, 2, half, 0));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(gpa_alloc(a, uint64_t, opaque_size(SIZE_MAX / 4)));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(gpa_raw_realloc(a, NULL, 0, half, 4, 0));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(r.calls, 0); /* caught before the allocator was asked */
}

static void test_raw_failed_alloc_sets_enomem(void **state) {
  (void)state;
  recorder_t r;
  gpa_allocator_t a = recorder_init(&r);
  r.refuse = true; /* returns NULL and leaves errno alone */
  errno = 0;
  assert_null(gpa_raw_alloc(a, 64, 0));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(r.calls, 1);

  /* Success leaves errno as it was. */
  r.refuse = false;
  errno = ERRNO_SENTINEL;
  void *p = gpa_raw_alloc(a, 64, 0);
  assert_non_null(p);
  assert_int_equal(errno, ERRNO_SENTINEL);
  gpa_raw_free(a, p, 64, 0);
}

static void test_raw_alloc_zeroed_is_zero(void **state) {
  (void)state;
  /* A buffer full of non-zero bytes: the zeroes can only come from the call. */
  uint8_t buffer[1024];
  memset(buffer, 0xA5, sizeof buffer);
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  gpa_allocator_t a = gpa_fixed_buffer_allocator(&fb);
  uint32_t *p = gpa_raw_alloc_zeroed(a, 100, sizeof(uint32_t), _Alignof(uint32_t));
  assert_non_null(p);
  for (size_t i = 0; i < 100; i++) assert_int_equal(p[i], 0);
  uint64_t *q = gpa_alloc_zeroed(a, uint64_t, 50);
  assert_non_null(q);
  for (size_t i = 0; i < 50; i++) assert_int_equal(q[i], 0);
}

static void test_raw_realloc_grows_and_shrinks_keeping_bytes(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);

  uint32_t *p = gpa_realloc(a, (uint32_t *)NULL, 0, 10); /* NULL allocates */
  assert_non_null(p);
  for (uint32_t i = 0; i < 10; i++) p[i] = i * 3;
  p = gpa_realloc(a, p, 10, 100000);
  assert_non_null(p);
  for (uint32_t i = 0; i < 10; i++) assert_int_equal(p[i], i * 3);
  for (uint32_t i = 10; i < 100000; i++) p[i] = i * 3;
  p = gpa_realloc(a, p, 100000, 5);
  assert_non_null(p);
  for (uint32_t i = 0; i < 5; i++) assert_int_equal(p[i], i * 3);
  /* Over-aligned: the C library cannot remap it, so it is moved by hand. */
  uint8_t *q = gpa_raw_realloc(a, NULL, 0, 100, 1, 256);
  assert_non_null(q);
  fill(q, 100, 7);
  q = gpa_raw_realloc(a, q, 100, 1 << 20, 1, 256);
  assert_non_null(q);
  assert_true(is_aligned(q, 256));
  assert_pattern(q, 100, 7);

  /* new_count 0 frees. */
  assert_null(gpa_realloc(a, p, 5, 0));
  assert_null(gpa_raw_realloc(a, q, 1 << 20, 0, 1, 256));
  assert_balanced(&f);
  assert_true(f.allocations > 0);
}

static void test_raw_realloc_in_place_and_moved(void **state) {
  (void)state;
  static uint8_t buffer[4096];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  gpa_allocator_t a = gpa_fixed_buffer_allocator(&fb);
  uint8_t *first = gpa_raw_alloc(a, 64, 0);
  assert_non_null(first);
  fill(first, 64, 3);
  /* The most recent block grows in place. */
  uint8_t *grown = gpa_raw_realloc(a, first, 64, 128, 1, 0);
  assert_ptr_equal(grown, first);
  assert_pattern(grown, 64, 3);
  /* With a block after it, it has to move, bytes and all. */
  void *blocker = gpa_raw_alloc(a, 16, 0);
  assert_non_null(blocker);
  fill(grown, 128, 4);
  uint8_t *moved = gpa_raw_realloc(a, grown, 128, 512, 1, 0);
  assert_non_null(moved);
  assert_true(moved != grown);
  assert_pattern(moved, 128, 4);
}

static void test_raw_realloc_failure_leaves_old_block(void **state) {
  (void)state;
  static uint8_t buffer[4096];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  /* Allocations 0 and 1 succeed, every later one fails. */
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_fixed_buffer_allocator(&fb), 2, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);
  uint8_t *block = gpa_raw_alloc(a, 100, 0);
  assert_non_null(block);
  fill(block, 100, 9);
  /* A later block, so the first can neither grow nor be remapped in place. */
  assert_non_null(gpa_raw_alloc(a, 16, 0));
  errno = 0;
  assert_null(gpa_raw_realloc(a, block, 100, 1000, 1, 0));
  assert_int_equal(errno, ENOMEM);
  assert_true(f.has_induced_failure);
  assert_int_equal(f.deallocations, 0); /* the old block was not freed */
  assert_pattern(block, 100, 9);
  assert_true(gpa_fixed_buffer_owns(&fb, block));
}

static void test_raw_dupe_and_strdup_copy(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);

  const char *text = "an arena of bytes";
  char *copy = gpa_strdup(a, text);
  assert_non_null(copy);
  assert_true(copy != text);
  assert_string_equal(copy, text);
  assert_int_equal(f.allocated_bytes, strlen(text) + 1);

  uint8_t bytes[300];
  fill(bytes, sizeof bytes, 5);
  uint8_t *dup = gpa_raw_dupe(a, bytes, sizeof bytes, 64);
  assert_non_null(dup);
  assert_true(is_aligned(dup, 64));
  assert_pattern(dup, sizeof bytes, 5);

  static const uint32_t words[] = {1, 2, 3, 0xDEADBEEF};
  uint32_t *wdup = gpa_dupe(a, uint32_t, words, 4);
  assert_non_null(wdup);
  assert_memory_equal(wdup, words, sizeof words);

  void *empty = gpa_raw_dupe(a, NULL, 0, 0); /* no bytes to read */
  assert_non_null(empty);

  gpa_free(a, copy, strlen(copy) + 1);
  gpa_raw_free(a, dup, sizeof bytes, 64);
  gpa_free(a, wdup, 4);
  gpa_raw_free(a, empty, 0, 0);
  assert_balanced(&f);
  assert_int_equal(f.allocations, 4);
}

static void test_raw_free_ignores_null(void **state) {
  (void)state;
  recorder_t r;
  gpa_allocator_t a = recorder_init(&r);
  gpa_raw_free(a, NULL, 16, 0);
  assert_int_equal(r.calls, 0);
}

/* ---- arena -------------------------------------------------------------- */

static void test_arena_many_small_allocations_in_growing_chunks(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_arena_t arena;
  arena_over_counter(&arena, &f);
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  assert_int_equal(gpa_arena_capacity(&arena), 0);

  enum { COUNT = 20000, MAX_LEN = 64 };
  static uint8_t *blocks[COUNT];
  size_t chunks = 0, last_chunk_size = 0;
  for (size_t i = 0; i < COUNT; i++) {
    size_t len = 1 + i % MAX_LEN;
    size_t align = (size_t)1 << (i % 7); /* 1 .. 64 */
    size_t capacity_before = gpa_arena_capacity(&arena);
    blocks[i] = gpa_raw_alloc(a, len, align);
    assert_non_null(blocks[i]);
    assert_true(is_aligned(blocks[i], align));
    memset(blocks[i], (int)(i & 0xFF), len);
    if (f.allocations > chunks) { /* a new chunk, bigger than the one before */
      chunks = f.allocations;
      size_t chunk_size = gpa_arena_capacity(&arena) - capacity_before;
      assert_true(chunk_size > last_chunk_size);
      last_chunk_size = chunk_size;
    }
  }
  /* About 700 KiB in chunks growing by half: a handful, not one per page. */
  assert_true(chunks > 1);
  assert_true(chunks < 20);
  assert_int_equal(gpa_arena_capacity(&arena), f.allocated_bytes);
  /* No block overlapped another. */
  for (size_t i = 0; i < COUNT; i++) {
    size_t len = 1 + i % MAX_LEN;
    for (size_t j = 0; j < len; j++) assert_int_equal(blocks[i][j], i & 0xFF);
  }
  gpa_arena_deinit(&arena);
  assert_int_equal(gpa_arena_capacity(&arena), 0);
  assert_balanced(&f);
}

static void test_arena_honours_large_alignment(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_arena_t arena;
  arena_over_counter(&arena, &f);
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  for (size_t align = 1; align <= (size_t)1 << 16; align *= 2) {
    uint8_t *p = gpa_raw_alloc(a, 3, align);
    assert_non_null(p);
    assert_true(is_aligned(p, align));
  }
  uint8_t *big = gpa_raw_alloc(a, 1 << 20, 4096); /* bigger than any chunk so far */
  assert_non_null(big);
  assert_true(is_aligned(big, 4096));
  memset(big, 1, 1 << 20);
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

/* gpa_alloc and gpa_create bump an arena inline: blocks follow each other in
 * a chunk, and a full chunk still sends the call to the arena's slow path. */
static void test_arena_typed_helpers(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_arena_t arena;
  arena_over_counter(&arena, &f);
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  uint64_t *prev = NULL;
  size_t adjacent = 0;
  for (uint64_t i = 0; i < 10000; i++) {
    uint64_t *x = gpa_alloc(a, uint64_t, 3);
    assert_non_null(x);
    assert_true(is_aligned(x, _Alignof(uint64_t)));
    x[0] = x[1] = x[2] = i;
    if (prev != NULL && x == prev + 3) adjacent++;
    if (prev != NULL) assert_int_equal(prev[2], i - 1);
    prev = x;
  }
  assert_true(adjacent > 9000);  /* bumped within chunks */
  assert_true(f.allocations > 1); /* and new chunks taken when full */
  struct pair { double x; char tag; } *p = gpa_create(a, struct pair);
  assert_non_null(p);
  assert_true(is_aligned(p, _Alignof(struct pair)));
  assert_non_null(gpa_alloc(a, char, 0)); /* zero elements: still a block */
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

static void test_arena_free_of_last_allocation_reclaims(void **state) {
  (void)state;
  gpa_arena_t arena;
  gpa_arena_init(&arena, gpa_libc_allocator());
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  void *first = gpa_raw_alloc(a, 100, 0);
  void *second = gpa_raw_alloc(a, 100, 0);
  assert_non_null(first);
  assert_non_null(second);
  gpa_raw_free(a, second, 100, 0);
  void *again = gpa_raw_alloc(a, 100, 0);
  assert_ptr_equal(again, second);
  /* Not the most recent: a no-op, its bytes stay taken. */
  gpa_raw_free(a, first, 100, 0);
  void *third = gpa_raw_alloc(a, 100, 0);
  assert_true(third != first);
  assert_true((uintptr_t)third > (uintptr_t)again);
  /* Blocks freed in the reverse order of their allocation all come back. */
  void *x = gpa_raw_alloc(a, 32, 16), *y = gpa_raw_alloc(a, 48, 16), *z = gpa_raw_alloc(a, 16, 16);
  gpa_raw_free(a, z, 16, 16);
  gpa_raw_free(a, y, 48, 16);
  gpa_raw_free(a, x, 32, 16);
  assert_ptr_equal(gpa_raw_alloc(a, 96, 16), x);
  gpa_arena_deinit(&arena);
}

static void test_arena_resize_of_last_grows_in_place(void **state) {
  (void)state;
  gpa_arena_t arena;
  gpa_arena_init(&arena, gpa_libc_allocator());
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  uint8_t *older = gpa_raw_alloc(a, 32, 0);
  uint8_t *last = gpa_raw_alloc(a, 16, 0);
  assert_non_null(older);
  assert_non_null(last);
  fill(last, 16, 2);
  assert_true(gpa_raw_resize(a, last, 16, 0, 200));
  assert_pattern(last, 16, 2);
  uint8_t *next = gpa_raw_alloc(a, 8, 1);
  assert_true(next >= last + 200); /* the grown bytes are the block's */
  /* next is now the last: shrinking it gives the bytes back. */
  assert_true(gpa_raw_resize(a, next, 8, 1, 1));
  assert_ptr_equal(gpa_raw_alloc(a, 1, 1), next + 1);

  /* Older blocks: shrinking is allowed (a no-op), growing is not. */
  assert_true(gpa_raw_resize(a, older, 32, 0, 8));
  assert_false(gpa_raw_resize(a, older, 32, 0, 64));
  assert_null(gpa_raw_remap(a, older, 32, 0, 64));
  /* The last block cannot grow past its chunk, and stays where it was. */
  uint8_t *tail = gpa_raw_alloc(a, 8, 0);
  assert_false(gpa_raw_resize(a, tail, 8, 0, (size_t)1 << 30));
  assert_ptr_equal(gpa_raw_remap(a, tail, 8, 0, 64), tail);
  assert_ptr_equal(gpa_raw_realloc(a, tail, 64, 128, 1, 0), tail);
  gpa_arena_deinit(&arena);
}

/* Fill an arena until it holds at least three chunks. */
static void fill_arena_chunks(gpa_arena_t *arena, const gpa_failing_t *f) {
  gpa_allocator_t a = gpa_arena_allocator(arena);
  size_t start = f->allocations;
  while (f->allocations < start + 3) assert_non_null(gpa_raw_alloc(a, 1000, 0));
}

static void test_arena_reset_free_all(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_arena_t arena;
  arena_over_counter(&arena, &f);
  fill_arena_chunks(&arena, &f);
  assert_true(gpa_arena_reset(&arena, GPA_ARENA_FREE_ALL, 0));
  assert_int_equal(gpa_arena_capacity(&arena), 0);
  assert_balanced(&f);
  /* Still usable. */
  assert_non_null(gpa_raw_alloc(gpa_arena_allocator(&arena), 10, 0));
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

static void test_arena_reset_retain_capacity(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_arena_t arena;
  arena_over_counter(&arena, &f);
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  fill_arena_chunks(&arena, &f);
  size_t capacity = gpa_arena_capacity(&arena);
  assert_true(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_CAPACITY, 0));
  assert_int_equal(gpa_arena_capacity(&arena), capacity);
  assert_int_equal(f.allocations - f.deallocations, 1); /* one chunk */
  /* The whole capacity (less a header's worth) is usable without asking
   * the backing allocator again. */
  size_t allocations = f.allocations;
  uint8_t *p = gpa_raw_alloc(a, capacity - 64, 0);
  assert_non_null(p);
  memset(p, 0x5A, capacity - 64);
  assert_int_equal(f.allocations, allocations);
  /* A second reset with one chunk keeps it as it is. */
  assert_true(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_CAPACITY, 0));
  assert_int_equal(gpa_arena_capacity(&arena), capacity);
  assert_ptr_equal(gpa_raw_alloc(a, capacity - 64, 0), p);
  assert_int_equal(f.allocations, allocations);
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

static void test_arena_reset_retain_with_limit(void **state) {
  (void)state;
  enum { LIMIT = 8192 };
  gpa_failing_t f;
  gpa_arena_t arena;
  arena_over_counter(&arena, &f);
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  fill_arena_chunks(&arena, &f);
  assert_true(gpa_arena_capacity(&arena) > LIMIT);
  assert_true(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_WITH_LIMIT, LIMIT));
  assert_int_equal(gpa_arena_capacity(&arena), LIMIT);
  assert_int_equal(f.allocations - f.deallocations, 1);
  uint8_t *p = gpa_raw_alloc(a, LIMIT / 2, 0);
  assert_non_null(p);
  memset(p, 1, LIMIT / 2);
  /* A limit above the capacity keeps it all. */
  assert_true(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_WITH_LIMIT, 10 * LIMIT));
  assert_int_equal(gpa_arena_capacity(&arena), LIMIT);
  /* A limit of 0 keeps nothing. */
  assert_true(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_WITH_LIMIT, 0));
  assert_int_equal(gpa_arena_capacity(&arena), 0);
  assert_balanced(&f);
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

static void test_arena_reset_failure_leaves_arena_usable(void **state) {
  (void)state;
  gpa_failing_t f;
  /* The first resize fails (the arena resizes nothing before its reset). */
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, 0);
  gpa_arena_t arena;
  gpa_arena_init(&arena, gpa_failing_allocator(&f));
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  fill_arena_chunks(&arena, &f);
  size_t capacity = gpa_arena_capacity(&arena);
  f.fail_index = f.alloc_index; /* and the replacement chunk cannot be had */
  assert_false(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_CAPACITY, 0));
  assert_true(f.has_induced_failure);
  /* It kept the chunk it had (the newest, the largest) and works. */
  size_t kept = gpa_arena_capacity(&arena);
  assert_true(kept > 0);
  assert_true(kept < capacity);
  assert_int_equal(f.allocations - f.deallocations, 1);
  uint8_t *p = gpa_raw_alloc(a, 1000, 0);
  assert_non_null(p);
  memset(p, 2, 1000);

  /* Under a limit smaller than that chunk, nothing can be kept. */
  f.resize_fail_index = f.resize_index;
  assert_false(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_WITH_LIMIT, kept / 2));
  assert_int_equal(gpa_arena_capacity(&arena), 0);
  assert_null(gpa_raw_alloc(a, 1, 0)); /* the backing still refuses */
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

static void test_arena_deinit_returns_every_chunk(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_arena_t arena;
  arena_over_counter(&arena, &f);
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  for (size_t i = 0; i < 5000; i++) assert_non_null(gpa_raw_alloc(a, 1 + i % 300, 8));
  assert_true(gpa_arena_reset(&arena, GPA_ARENA_RETAIN_CAPACITY, 0));
  for (size_t i = 0; i < 5000; i++) assert_non_null(gpa_raw_alloc(a, 1 + i % 500, 16));
  assert_true(f.allocations > 1);
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
  assert_int_equal(gpa_arena_capacity(&arena), 0);
  /* It can be set up again after deinit. */
  gpa_arena_init(&arena, gpa_failing_allocator(&f));
  assert_non_null(gpa_raw_alloc(gpa_arena_allocator(&arena), 10, 0));
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

static void test_arena_out_of_memory_returns_null(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), 1, NEVER); /* one chunk only */
  gpa_arena_t arena;
  gpa_arena_init(&arena, gpa_failing_allocator(&f));
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  assert_non_null(gpa_raw_alloc(a, 100, 0));
  errno = 0;
  assert_null(gpa_raw_alloc(a, 100000, 0));
  assert_int_equal(errno, ENOMEM);
  assert_non_null(gpa_raw_alloc(a, 100, 0)); /* the first chunk still serves */
  gpa_arena_deinit(&arena);
  assert_balanced(&f);
}

/* ---- fixed buffer ------------------------------------------------------- */

static void test_fixed_buffer_fills_then_returns_null(void **state) {
  (void)state;
  enum { SIZE = 1024, BLOCK = 16 };
  static uint8_t buffer[SIZE];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, SIZE);
  gpa_allocator_t a = gpa_fixed_buffer_allocator(&fb);
  size_t served = 0;
  uint8_t *p;
  while ((p = gpa_raw_alloc(a, BLOCK, 1)) != NULL) {
    assert_ptr_equal(p, buffer + served * BLOCK);
    served++;
  }
  assert_int_equal(served, SIZE / BLOCK);
  assert_int_equal(errno, ENOMEM);
  /* Full stays full, without aborting, whatever is asked. */
  assert_null(gpa_raw_alloc(a, 1, 1));
  assert_null(gpa_raw_alloc(a, 0, 1));
  assert_null(gpa_raw_alloc(a, SIZE_MAX, 1));
  assert_int_equal(fb.end_index, SIZE);
}

static void test_fixed_buffer_honours_alignment(void **state) {
  (void)state;
  static _Alignas(4096) uint8_t storage[3 * 4096];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, storage + 1, sizeof storage - 1); /* an odd start */
  gpa_allocator_t a = gpa_fixed_buffer_allocator(&fb);
  for (size_t align = 1; align <= LARGEST_TESTED_ALIGNMENT; align *= 2) {
    uint8_t *p = gpa_raw_alloc(a, 3, align);
    assert_non_null(p);
    assert_true(is_aligned(p, align));
    assert_true(gpa_fixed_buffer_owns(&fb, p + 2));
  }

  /* No 4096-aligned address lies inside this one: just NULL. */
  gpa_fixed_buffer_t small;
  gpa_fixed_buffer_init(&small, storage + 1, 64);
  assert_null(gpa_raw_alloc(gpa_fixed_buffer_allocator(&small), 1, 4096));
  assert_int_equal(small.end_index, 0);
}

static void test_fixed_buffer_owns(void **state) {
  (void)state;
  static uint8_t buffer[256];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  gpa_allocator_t a = gpa_fixed_buffer_allocator(&fb);
  uint8_t *p = gpa_raw_alloc(a, 32, 1);
  assert_true(gpa_fixed_buffer_owns(&fb, p));
  assert_true(gpa_fixed_buffer_owns(&fb, p + 31));
  assert_false(gpa_fixed_buffer_owns(&fb, p + 32)); /* inside, not allocated */
  assert_false(gpa_fixed_buffer_owns(&fb, buffer + sizeof buffer));
  uint8_t elsewhere;
  assert_false(gpa_fixed_buffer_owns(&fb, &elsewhere));
  assert_false(gpa_fixed_buffer_owns(&fb, NULL));
}

static void test_fixed_buffer_free_and_resize_of_last(void **state) {
  (void)state;
  static uint8_t buffer[512];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  gpa_allocator_t a = gpa_fixed_buffer_allocator(&fb);
  uint8_t *older = gpa_raw_alloc(a, 64, 1);
  uint8_t *last = gpa_raw_alloc(a, 64, 1);
  gpa_raw_free(a, last, 64, 1);
  assert_int_equal(fb.end_index, 64);
  assert_ptr_equal(gpa_raw_alloc(a, 64, 1), last);
  /* The last grows in place up to the end of the buffer, no further. */
  assert_true(gpa_raw_resize(a, last, 64, 1, sizeof buffer - 64));
  assert_int_equal(fb.end_index, sizeof buffer);
  assert_false(gpa_raw_resize(a, last, sizeof buffer - 64, 1, sizeof buffer - 63));
  assert_true(gpa_raw_resize(a, last, sizeof buffer - 64, 1, 10));
  assert_int_equal(fb.end_index, 74);
  assert_ptr_equal(gpa_raw_remap(a, last, 10, 1, 20), last);
  /* An older block: shrinking is allowed, growing and freeing do nothing. */
  assert_true(gpa_raw_resize(a, older, 64, 1, 32));
  assert_false(gpa_raw_resize(a, older, 64, 1, 65));
  assert_null(gpa_raw_remap(a, older, 64, 1, 65));
  gpa_raw_free(a, older, 64, 1);
  assert_int_equal(fb.end_index, 84);
  /* Nothing allocated yet: the buffer's start is no "most recent block" to
   * grow, and after a reset neither is the old one. */
  gpa_fixed_buffer_t empty;
  gpa_fixed_buffer_init(&empty, buffer, sizeof buffer);
  gpa_allocator_t e = gpa_fixed_buffer_allocator(&empty);
  assert_false(gpa_raw_resize(e, buffer, 1, 1, 100));
  assert_int_equal(empty.end_index, 0);
  uint8_t *first = gpa_raw_alloc(e, 16, 1);
  gpa_fixed_buffer_reset(&empty);
  assert_false(gpa_raw_resize(e, first, 16, 1, 100));
  assert_int_equal(empty.end_index, 0);
}

static void test_fixed_buffer_reset(void **state) {
  (void)state;
  static uint8_t buffer[128];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  gpa_allocator_t a = gpa_fixed_buffer_allocator(&fb);
  uint8_t *first = gpa_raw_alloc(a, 100, 1);
  assert_non_null(first);
  assert_null(gpa_raw_alloc(a, 100, 1));
  gpa_fixed_buffer_reset(&fb);
  assert_false(gpa_fixed_buffer_owns(&fb, first));
  assert_ptr_equal(gpa_raw_alloc(a, 100, 1), first);
}

/* ---- failing allocator -------------------------------------------------- */

static void test_failing_fails_from_nth_allocation_on(void **state) {
  (void)state;
  enum { FAIL_AT = 3 };
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), FAIL_AT, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);
  void *blocks[FAIL_AT];
  for (size_t i = 0; i < FAIL_AT; i++) {
    blocks[i] = gpa_raw_alloc(a, 10 * (i + 1), 0);
    assert_non_null(blocks[i]);
    assert_false(f.has_induced_failure);
  }
  for (size_t i = 0; i < 3; i++) {
    errno = 0;
    assert_null(gpa_raw_alloc(a, 1, 0));
    assert_int_equal(errno, ENOMEM);
    assert_true(f.has_induced_failure);
  }
  assert_int_equal(f.alloc_index, FAIL_AT + 3);
  assert_int_equal(f.allocations, FAIL_AT);
  assert_int_equal(f.allocated_bytes, 10 + 20 + 30);
  for (size_t i = 0; i < FAIL_AT; i++) gpa_raw_free(a, blocks[i], 10 * (i + 1), 0);
  assert_int_equal(f.deallocations, FAIL_AT);
  assert_balanced(&f);
}

static void test_failing_fails_chosen_resize(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, 1);
  gpa_allocator_t a = gpa_failing_allocator(&f);
  void *p = gpa_raw_alloc(a, 100, 0);
  assert_true(gpa_raw_resize(a, p, 100, 0, 90)); /* resize 0 */
  assert_false(f.has_induced_failure);
  assert_false(gpa_raw_resize(a, p, 90, 0, 80)); /* resize 1: chosen to fail */
  assert_true(f.has_induced_failure);
  assert_true(gpa_raw_resize(a, p, 90, 0, 70)); /* resize 2 */
  assert_int_equal(f.resize_index, 3);
  assert_int_equal(f.freed_bytes, 30); /* 100 -> 90 -> 70 */
  gpa_raw_free(a, p, 70, 0);
  assert_balanced(&f);
}

static void test_failing_counts_bytes_through_resize_and_remap(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);
  uint8_t *p = gpa_raw_alloc(a, 100, 0);
  uint8_t *q = gpa_raw_alloc(a, 200, 0);
  assert_int_equal(f.allocated_bytes, 300);
  fill(q, 200, 6);
  q = gpa_raw_remap(a, q, 200, 0, 5000);
  assert_non_null(q);
  assert_pattern(q, 200, 6);
  assert_int_equal(f.allocated_bytes, 5100);
  assert_int_equal(f.resize_index, 1); /* a remap is a resize attempt */
  gpa_raw_free(a, p, 100, 0);
  gpa_raw_free(a, q, 5000, 0);
  assert_int_equal(f.freed_bytes, 5100);
  assert_int_equal(f.allocations, 2);
  assert_int_equal(f.deallocations, 2);
}

static void test_failing_backing_failure_is_not_induced(void **state) {
  (void)state;
  static uint8_t buffer[64];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_fixed_buffer_allocator(&fb), NEVER, NEVER);
  assert_null(gpa_raw_alloc(gpa_failing_allocator(&f), 1000, 0));
  assert_false(f.has_induced_failure);
  assert_int_equal(f.alloc_index, 1);
  assert_int_equal(f.allocations, 0);
  assert_int_equal(f.allocated_bytes, 0);
}

/* ---- C library adapter -------------------------------------------------- */

static void test_libc_allocator_alloc_resize_remap_free(void **state) {
  (void)state;
  gpa_allocator_t a = gpa_libc_allocator();
  assert_null(a.ctx);

  uint8_t *p = gpa_raw_alloc(a, 100, 0);
  assert_non_null(p);
  assert_true(is_aligned(p, NATURAL_ALIGNMENT));
  fill(p, 100, 8);
  size_t usable = malloc_usable_size(p);
  assert_true(gpa_raw_resize(a, p, 100, 0, usable));
  assert_false(gpa_raw_resize(a, p, 100, 0, usable + 1));
  p = gpa_raw_remap(a, p, 100, 0, 100000);
  assert_non_null(p);
  assert_pattern(p, 100, 8);
  gpa_raw_free(a, p, 100000, 0);

  uint8_t *aligned = gpa_raw_alloc(a, 1000, 256);
  assert_non_null(aligned);
  assert_true(is_aligned(aligned, 256));
  memset(aligned, 3, 1000);
  assert_null(gpa_raw_remap(a, aligned, 1000, 256, 100000)); /* realloc would lose the alignment */
  uint8_t *moved = gpa_raw_realloc(a, aligned, 1000, 100000, 1, 256);
  assert_non_null(moved);
  assert_true(is_aligned(moved, 256));
  for (size_t i = 0; i < 1000; i++) assert_int_equal(moved[i], 3);
  gpa_raw_free(a, moved, 100000, 256);

  void *empty = gpa_raw_alloc(a, 0, 0);
  assert_non_null(empty);
  gpa_raw_free(a, empty, 0, 0);
}

/* ---- growable array ----------------------------------------------------- */

static void assert_counting_up(const gpa_array_t *arr) {
  const uint32_t *items = gpa_array_items(arr, uint32_t);
  for (size_t i = 0; i < arr->len; i++) assert_int_equal(items[i], i);
}

static void test_array_append_one_and_many(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, NEVER);
  gpa_array_t arr;
  gpa_array_init_typed(&arr, gpa_failing_allocator(&f), uint32_t);
  assert_null(arr.items);
  assert_int_equal(arr.len, 0);
  for (uint32_t i = 0; i < 1000; i++) assert_int_equal(gpa_array_append(&arr, &i), 0);
  assert_int_equal(arr.len, 1000);
  uint32_t more[500];
  for (uint32_t i = 0; i < 500; i++) more[i] = 1000 + i;
  assert_int_equal(gpa_array_append_many(&arr, more, 500), 0);
  assert_int_equal(gpa_array_append_many(&arr, more, 0), 0);
  assert_int_equal(arr.len, 1500);
  assert_true(arr.capacity >= arr.len);
  assert_counting_up(&arr);
  assert_true(is_aligned(arr.items, _Alignof(uint32_t)));
  gpa_array_deinit(&arr);
  assert_balanced(&f);
}

static void test_array_growth_keeps_content(void **state) {
  (void)state;
  static uint8_t buffer[1 << 16];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_fixed_buffer_allocator(&fb), NEVER, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);
  gpa_array_t arr;
  gpa_array_init_typed(&arr, a, uint32_t);
  size_t growths = 0, capacity = 0;
  for (uint32_t i = 0; i < 2000; i++) {
    assert_int_equal(gpa_array_append(&arr, &i), 0);
    if (arr.capacity != capacity) {
      assert_true(arr.capacity > capacity);
      capacity = arr.capacity;
      growths++;
      assert_counting_up(&arr);
      /* A block after the array's storage, so the next growth must move. */
      assert_non_null(gpa_raw_alloc(a, 1, 1));
    }
  }
  assert_counting_up(&arr);
  /* Geometric growth: a dozen or so steps to 2000, not hundreds. */
  assert_true(growths < 20);
  assert_true(f.allocations > growths); /* it really moved */
}

static void test_array_reserve(void **state) {
  (void)state;
  gpa_array_t arr;
  gpa_array_init_typed(&arr, gpa_libc_allocator(), uint64_t);
  assert_int_equal(gpa_array_reserve(&arr, 100), 0);
  assert_true(arr.capacity >= 100);
  assert_int_equal(arr.len, 0);
  void *items = arr.items;
  assert_int_equal(gpa_array_reserve(&arr, 50), 0);
  assert_ptr_equal(arr.items, items);
  for (uint64_t i = 0; i < 100; i++) assert_int_equal(gpa_array_append(&arr, &i), 0);
  assert_ptr_equal(arr.items, items); /* reserved room: no move */
  gpa_array_deinit(&arr);
}

static void test_array_enomem_leaves_array_unchanged(void **state) {
  (void)state;
  static uint8_t buffer[4096];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  /* Allocations 0 (the array) and 1 (a block after it) succeed. */
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_fixed_buffer_allocator(&fb), 2, NEVER);
  gpa_allocator_t a = gpa_failing_allocator(&f);
  gpa_array_t arr;
  gpa_array_init_typed(&arr, a, uint32_t);
  assert_int_equal(gpa_array_reserve(&arr, 4), 0);
  assert_non_null(gpa_raw_alloc(a, 1, 1)); /* the storage cannot grow in place */
  for (uint32_t i = 0; i < 4; i++) assert_int_equal(gpa_array_append(&arr, &i), 0);
  gpa_array_t before = arr;

  uint32_t next = 4;
  assert_int_equal(gpa_array_append(&arr, &next), ENOMEM);
  assert_true(f.has_induced_failure);
  assert_memory_equal(&arr, &before, sizeof arr);
  assert_counting_up(&arr);
  assert_int_equal(gpa_array_reserve(&arr, 100), ENOMEM);
  assert_memory_equal(&arr, &before, sizeof arr);
  /* A count that overflows is refused before anything is asked. */
  size_t attempts = f.alloc_index;
  assert_int_equal(gpa_array_append_many(&arr, &next, opaque_size(SIZE_MAX)), ENOMEM);
  assert_int_equal(gpa_array_reserve(&arr, opaque_size(SIZE_MAX)), ENOMEM);
  assert_int_equal(f.alloc_index, attempts);
  assert_memory_equal(&arr, &before, sizeof arr);
  assert_counting_up(&arr);
}

static void test_array_append_from_itself(void **state) {
  (void)state;
  static uint8_t buffer[4096];
  gpa_fixed_buffer_t fb;
  gpa_fixed_buffer_init(&fb, buffer, sizeof buffer);
  recorder_t r;
  gpa_allocator_t a = recorder_init(&r);
  r.backing = gpa_fixed_buffer_allocator(&fb);
  r.scribble_on_free = true; /* the old storage is garbage once given up */
  gpa_array_t arr;
  gpa_array_init_typed(&arr, a, uint32_t);
  for (uint32_t i = 0; i < 8; i++) assert_int_equal(gpa_array_append(&arr, &i), 0);
  assert_int_equal(gpa_array_reserve(&arr, 8), 0);
  assert_non_null(gpa_raw_alloc(a, 1, 1)); /* growing must move the storage */
  void *old_items = arr.items;
  /* Appends a copy of itself, which the growth moves away from under it. */
  assert_int_equal(gpa_array_append_many(&arr, arr.items, arr.len), 0);
  assert_true(arr.items != old_items);
  assert_int_equal(arr.len, 16);
  const uint32_t *items = gpa_array_items(&arr, uint32_t);
  for (uint32_t i = 0; i < 16; i++) assert_int_equal(items[i], i % 8);
}

static void test_array_deinit_frees_everything(void **state) {
  (void)state;
  gpa_failing_t f;
  gpa_failing_init(&f, gpa_libc_allocator(), NEVER, NEVER);
  gpa_array_t arr;
  /* Over-aligned elements, so growth goes through alloc + copy + free. */
  typedef struct {
    _Alignas(64) uint32_t value;
  } padded_t;
  gpa_array_init_typed(&arr, gpa_failing_allocator(&f), padded_t);
  for (uint32_t i = 0; i < 3000; i++) {
    padded_t elem = {.value = i};
    assert_int_equal(gpa_array_append(&arr, &elem), 0);
    assert_true(is_aligned(arr.items, 64));
  }
  const padded_t *items = gpa_array_items(&arr, padded_t);
  for (uint32_t i = 0; i < 3000; i++) assert_int_equal(items[i].value, i);
  assert_true(f.allocations > 1);
  gpa_array_deinit(&arr);
  assert_balanced(&f);
  assert_null(arr.items);
  assert_int_equal(arr.len, 0);
  assert_int_equal(arr.capacity, 0);
  /* Reusable after deinit. */
  padded_t elem = {.value = 7};
  assert_int_equal(gpa_array_append(&arr, &elem), 0);
  assert_int_equal(gpa_array_items(&arr, padded_t)[0].value, 7);
  gpa_array_deinit(&arr);
  assert_balanced(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_raw_alloc_honours_alignment),
      cmocka_unit_test(test_raw_zero_length_and_natural_alignment_reach_vtable),
      cmocka_unit_test(test_raw_calls_pass_callers_address),
      cmocka_unit_test(test_raw_rejects_alignment_not_power_of_two),
      cmocka_unit_test(test_raw_array_overflow_is_enomem),
      cmocka_unit_test(test_raw_failed_alloc_sets_enomem),
      cmocka_unit_test(test_raw_alloc_zeroed_is_zero),
      cmocka_unit_test(test_raw_realloc_grows_and_shrinks_keeping_bytes),
      cmocka_unit_test(test_raw_realloc_in_place_and_moved),
      cmocka_unit_test(test_raw_realloc_failure_leaves_old_block),
      cmocka_unit_test(test_raw_dupe_and_strdup_copy),
      cmocka_unit_test(test_raw_free_ignores_null),
      cmocka_unit_test(test_arena_many_small_allocations_in_growing_chunks),
      cmocka_unit_test(test_arena_honours_large_alignment),
      cmocka_unit_test(test_arena_typed_helpers),
      cmocka_unit_test(test_arena_free_of_last_allocation_reclaims),
      cmocka_unit_test(test_arena_resize_of_last_grows_in_place),
      cmocka_unit_test(test_arena_reset_free_all),
      cmocka_unit_test(test_arena_reset_retain_capacity),
      cmocka_unit_test(test_arena_reset_retain_with_limit),
      cmocka_unit_test(test_arena_reset_failure_leaves_arena_usable),
      cmocka_unit_test(test_arena_deinit_returns_every_chunk),
      cmocka_unit_test(test_arena_out_of_memory_returns_null),
      cmocka_unit_test(test_fixed_buffer_fills_then_returns_null),
      cmocka_unit_test(test_fixed_buffer_honours_alignment),
      cmocka_unit_test(test_fixed_buffer_owns),
      cmocka_unit_test(test_fixed_buffer_free_and_resize_of_last),
      cmocka_unit_test(test_fixed_buffer_reset),
      cmocka_unit_test(test_failing_fails_from_nth_allocation_on),
      cmocka_unit_test(test_failing_fails_chosen_resize),
      cmocka_unit_test(test_failing_counts_bytes_through_resize_and_remap),
      cmocka_unit_test(test_failing_backing_failure_is_not_induced),
      cmocka_unit_test(test_libc_allocator_alloc_resize_remap_free),
      cmocka_unit_test(test_array_append_one_and_many),
      cmocka_unit_test(test_array_growth_keeps_content),
      cmocka_unit_test(test_array_reserve),
      cmocka_unit_test(test_array_enomem_leaves_array_unchanged),
      cmocka_unit_test(test_array_append_from_itself),
      cmocka_unit_test(test_array_deinit_frees_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

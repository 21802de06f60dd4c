/* unit_slab.c: segments, slabs and the heap above them: pointer-to-metadata
 * arithmetic, lazy carving, remote frees, retiring empty slabs. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
#include "os.h"
#include "size_class.h"

/* The owner's free list, read the way the allocator reads it. */
static gpa_block_t *list_block(const gpa_slab_t *s, uint32_t index) {
  return index == GPA_LIST_END ? NULL : slab_block_at(s, index);
}
static gpa_block_t *list_head(const gpa_slab_t *s) { return list_block(s, s->free_index); }
static gpa_block_t *list_next(const gpa_slab_t *s, const gpa_block_t *b) {
  return list_block(s, (uint32_t)(b->next_encoded ^ s->key));
}

static size_t free_list_length(const gpa_slab_t *s) {
  size_t n = 0;
  for (gpa_block_t *b = list_head(s); b != NULL; b = list_next(s, b)) n++;
  return n;
}

static void test_pointer_finds_its_segment_and_slab(void **state) {
  (void)state;
  void *p = malloc(100);
  assert_non_null(p);
  gpa_segment_t *seg = segment_of(p);
  assert_true(segmap_contains(seg));
  assert_int_equal(seg->kind, GPA_SEGMENT_SMALL);
  assert_ptr_equal(seg->owner, gpa_tls_heap);
  gpa_slab_t *s = slab_of(seg, p);
  assert_int_equal(s->block_size, 112);
  assert_true(slab_is_block_start(s, p));
  assert_false(slab_is_block_start(s, (char *)p + 16));
  assert_int_equal((uintptr_t)s->start % GPA_PAGE_SIZE, 0);
  free(p);
  /* Memory that is not a segment is not in the map. */
  int local;
  assert_false(segmap_contains(segment_of(&local)));
  assert_false(segmap_contains(segment_of((void *)(uintptr_t)0x10)));
}

static void test_slab_carves_lazily_and_accounts(void **state) {
  (void)state;
  gpa_heap_t *h = gpa_tls_heap;
  gpa_segment_t *seg = segment_small_acquire(h->instance, h);
  assert_non_null(seg);
  unsigned cls = size_class_of(48);
  gpa_slab_t *s = segment_slab_alloc(seg, cls);
  assert_non_null(s);
  assert_int_equal(s->reserved, GPA_PAGE_SIZE / 48);
  assert_int_equal(s->capacity, 0);
  slab_extend(s);
  assert_int_equal(s->capacity, GPA_EXTEND_BYTES / 48);
  assert_int_equal(free_list_length(s), s->capacity);
  /* Every block on the list is a block start inside the slab. */
  for (gpa_block_t *b = list_head(s); b != NULL; b = list_next(s, b))
    assert_true(slab_is_block_start(s, b));
  slab_check(s);

  /* A remote push flags nothing on a slab in a queue, and collect moves
   * the block back and lowers the live count. */
  gpa_block_t *b = slab_pop_block(s);
  assert_int_equal(s->used, 1);
  assert_false(slab_block_looks_free(s, b));
  assert_true(slab_block_looks_free(s, list_head(s)));
  assert_false(slab_push_remote(s, b));
  assert_int_equal(s->used, 1);
  assert_true(slab_find_free_block(s, b));
  assert_true(slab_collect(s));
  assert_int_equal(s->used, 0);
  assert_ptr_equal(list_head(s), b);
  assert_false(slab_collect(s));

  /* A parked (full) slab: the next remote push reports the flag. */
  gpa_block_t *saved_free = list_head(s);
  uint32_t saved_index = s->free_index;
  s->free_index = GPA_LIST_END;
  assert_true(slab_try_mark_full(s));
  assert_true(slab_push_remote(s, b));
  assert_false(slab_try_mark_full(s)); /* a pending remote free blocks parking */
  s->free_index = GPA_LIST_END;
  s->used = 1;
  assert_true(slab_collect(s));
  assert_int_equal(s->used, 0);
  s->free_index = saved_index;

  size_t pages_before = seg->used_pages;
  segment_slab_free(seg, s);
  assert_int_equal(seg->used_pages, pages_before - size_class_slab_pages(cls));
  assert_false(slab_is_block_start(slab_of(seg, saved_free), saved_free));
  segment_small_release(seg);
}

static void test_page_runs_for_multi_page_slabs(void **state) {
  (void)state;
  gpa_heap_t *h = gpa_tls_heap;
  gpa_segment_t *seg = segment_small_acquire(h->instance, h);
  assert_non_null(seg);
  unsigned big = size_class_of(GPA_SMALL_MAX);
  unsigned pages = size_class_slab_pages(big);
  assert_true(pages > 1);
  unsigned fitted = 0;
  gpa_slab_t *slabs[GPA_PAGES_PER_SEGMENT];
  gpa_slab_t *s;
  while ((s = segment_slab_alloc(seg, big)) != NULL) {
    /* Every page of the slab maps back to it. */
    for (unsigned i = 0; i < pages; i++)
      assert_ptr_equal(slab_of(seg, s->start + (size_t)i * GPA_PAGE_SIZE), s);
    slabs[fitted++] = s;
  }
  assert_int_equal(fitted, (GPA_PAGES_PER_SEGMENT - 1) / pages);
  for (unsigned i = 0; i < fitted; i++) segment_slab_free(seg, slabs[i]);
  assert_int_equal(seg->used_pages, 0);
  segment_small_release(seg);
}

static void test_dirty_pages_are_purged_a_generation_late(void **state) {
  (void)state;
  gpa_heap_t *h = gpa_tls_heap;
  gpa_segment_t *seg = segment_small_acquire(h->instance, h);
  assert_non_null(seg);
  enum { SLABS = 32, HALF = SLABS / 2 };
  gpa_slab_t *slabs[SLABS];
  for (int i = 0; i < SLABS; i++) {
    slabs[i] = segment_slab_alloc(seg, size_class_of(48));
    assert_non_null(slabs[i]);
    slab_extend(slabs[i]);
  }
  size_t purged = os_purged_bytes();
  for (int i = 0; i < HALF; i++) segment_slab_free(seg, slabs[i]);
  /* First generation: nothing was dirty before, nothing is purged. */
  segment_age_dirty(seg);
  assert_int_equal(os_purged_bytes(), purged);
  assert_int_equal(__builtin_popcountll(seg->aged_pages), HALF);
  /* A reused aged page leaves both sets; new slabs take resident pages. */
  gpa_slab_t *again = segment_slab_alloc(seg, size_class_of(48));
  assert_ptr_equal(again, slabs[0]);
  assert_int_equal(__builtin_popcountll(seg->aged_pages), HALF - 1);
  for (int i = HALF; i < SLABS; i++) segment_slab_free(seg, slabs[i]);
  /* Second generation: the first one, still unused, goes back. */
  segment_age_dirty(seg);
  assert_int_equal(os_purged_bytes(), purged + (size_t)(HALF - 1) * GPA_PAGE_SIZE);
  assert_int_equal(__builtin_popcountll(seg->dirty_pages), HALF);
  assert_int_equal(seg->aged_pages, seg->dirty_pages);
  segment_slab_free(seg, again);
  segment_small_release(seg);
}

static void test_retirements_age_the_heap(void **state) {
  (void)state;
  /* A burst of frees, then quiet: most of the memory must be purged by the
   * retirements themselves. */
  enum { N = 64 * 1024 };
  void **blocks = malloc(N * sizeof *blocks);
  for (int i = 0; i < N; i++) blocks[i] = malloc(256);
  size_t purged = os_purged_bytes(), mapped = os_mapped_bytes();
  for (int i = 0; i < N; i++) free(blocks[i]);
  free(blocks);
  /* 16 MiB freed: all but the last generation or two went back, purged or
   * unmapped with their segments. */
  size_t released = (os_purged_bytes() - purged) + (mapped > os_mapped_bytes() ? mapped - os_mapped_bytes() : 0);
  assert_true(released >= (size_t)N * 256 - 3 * GPA_PURGE_THRESHOLD);
}

static void test_freeing_everything_retires_slabs(void **state) {
  (void)state;
  enum { N = 20000 };
  void **blocks = malloc(N * sizeof *blocks);
  assert_non_null(blocks);
  for (int i = 0; i < N; i++) blocks[i] = malloc(64);
  size_t in_slabs = atomic_load(&gpa_default_instance.slab_bytes);
  for (int i = 0; i < N; i++) free(blocks[i]);
  size_t after = atomic_load(&gpa_default_instance.slab_bytes);
  /* 20000 x 64 B is ~20 slabs; only the class's current one stays. */
  assert_true(after + 10 * GPA_PAGE_SIZE < in_slabs);
  free(blocks);
}

static void *free_in_other_thread(void *arg) {
  void **blocks = arg;
  for (int i = 0; i < 1000; i++) free(blocks[i]);
  return NULL;
}

static void test_remote_frees_are_collected_by_owner(void **state) {
  (void)state;
  void *blocks[1000];
  for (int i = 0; i < 1000; i++) blocks[i] = malloc(80);
  gpa_slab_t *s = slab_of(segment_of(blocks[0]), blocks[0]);
  uint32_t used_before = slab_used_blocks(s);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, free_in_other_thread, blocks), 0);
  pthread_join(t, NULL);
  /* The frees wait on the slab's remote list; live count unchanged. */
  assert_int_equal(slab_used_blocks(s), used_before);
  assert_true((atomic_load(&s->thread_free) & ~SLAB_FULL_FLAG) != 0);
  heap_collect(gpa_tls_heap, HEAP_COLLECT_IDLE);
  assert_true(slab_used_blocks(s) < used_before);
  slab_check(s);
}

/* A slab with no free block is parked off its class queue with its count
 * set aside; the owner's next free into it brings it back, count intact. */
static void test_full_slab_parks_and_comes_back(void **state) {
  (void)state;
  enum { N = 4000 };
  void **blocks = malloc(N * sizeof *blocks);
  assert_non_null(blocks);
  for (int i = 0; i < N; i++) blocks[i] = malloc(112);
  gpa_slab_t *s = slab_of(segment_of(blocks[0]), blocks[0]);
  assert_true(s->in_full);
  assert_int_equal(slab_used_blocks(s), s->reserved);
  slab_check(s);
  free(blocks[0]);
  assert_false(s->in_full);
  assert_int_equal(slab_used_blocks(s), s->reserved - 1);
  assert_ptr_equal(list_head(s), blocks[0]);
  slab_check(s);
  for (int i = 1; i < N; i++) free(blocks[i]);
  free(blocks);
}

/* One classifier answers for every call that takes a block back. */
static void test_pointers_are_classified(void **state) {
  (void)state;
  gpa_heap_t *h = gpa_tls_heap;
  block_ref_t ref;
  uint8_t *keep = malloc(48), *p = malloc(48);
  assert_int_equal(block_classify(p, h, &ref), BLOCK_SMALL);
  assert_ptr_equal(ref.slab, slab_of(segment_of(p), p));
  assert_ptr_equal(slab_block_at(ref.slab, ref.index), p);
  assert_int_equal(ref.usable, 48);
  assert_ptr_equal(ref.instance, &gpa_default_instance);
  assert_int_equal(block_classify(p + 16, h, &ref), BLOCK_INTERIOR);
  free(p);
  assert_int_equal(block_classify(p, h, &ref), BLOCK_FREED);
  /* From another heap the free mark alone decides. */
  assert_int_equal(block_classify(p, &gpa_empty_heap, &ref), BLOCK_FREED);
  int local;
  assert_int_equal(block_classify(&local, h, &ref), BLOCK_NOT_OURS);

  size_t big = 8 * GPA_SMALL_MAX;
  uint8_t *large = malloc(big);
  assert_int_equal(block_classify(large, h, &ref), BLOCK_LARGE);
  assert_true(ref.usable >= big);
  assert_int_equal(block_classify(large + 4096, h, &ref), BLOCK_INTERIOR);
  free(large);

  void *aligned = NULL;
  assert_int_equal(posix_memalign(&aligned, GPA_SEGMENT_SIZE, 100), 0);
  assert_int_equal(block_classify(aligned, h, &ref), BLOCK_OVERALIGNED);
  assert_null(ref.seg);
  assert_true(ref.usable >= 100);
  free(aligned);
  free(keep);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_pointer_finds_its_segment_and_slab),
    cmocka_unit_test(test_slab_carves_lazily_and_accounts),
    cmocka_unit_test(test_page_runs_for_multi_page_slabs),
    cmocka_unit_test(test_dirty_pages_are_purged_a_generation_late),
    cmocka_unit_test(test_retirements_age_the_heap),
    cmocka_unit_test(test_freeing_everything_retires_slabs),
    cmocka_unit_test(test_remote_frees_are_collected_by_owner),
    cmocka_unit_test(test_full_slab_parks_and_comes_back),
    cmocka_unit_test(test_pointers_are_classified),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

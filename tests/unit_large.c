/* unit_large.c: the large-object layer: header lookup, the reuse cache
 * (splitting big mappings, moving several side by side), realloc by moving pages,
 * over-aligned blocks, and the order of unmapping and unregistering. */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "internal.h"
#include "os.h"

#define MiB ((size_t)1 << 20)

static gpa_instance_t *inst = &gpa_default_instance;

static int setup_empty_cache(void **state) {
  (void)state;
  malloc_trim(0);
  return inst->large_cache_count == 0 ? 0 : -1;
}

static void test_large_block_finds_its_header(void **state) {
  (void)state;
  uint8_t *p = malloc(3 * MiB);
  assert_non_null(p);
  gpa_segment_t *seg = segment_of(p);
  assert_true(segmap_contains(seg));
  assert_int_equal(seg->kind, GPA_SEGMENT_LARGE);
  assert_ptr_equal(seg->large_ptr, p);
  assert_int_equal(seg->large_size, 3 * MiB);
  assert_true(large_usable_size(seg) >= 3 * MiB);
  assert_int_equal((uintptr_t)seg % GPA_SEGMENT_SIZE, 0);
  free(p);
}

static void test_freed_mapping_is_cached_and_reused(void **state) {
  (void)state;
  /* Keep something live so the cache limit (the live bytes) has room. */
  void *keep = malloc(40 * MiB);
  uint8_t *p = malloc(6 * MiB);
  memset(p, 0x11, 6 * MiB);
  gpa_segment_t *seg = segment_of(p);
  free(p);
  assert_int_equal(inst->large_cache_count, 1);
  assert_null(seg->large_ptr); /* no longer live */
  uint8_t *q = malloc(6 * MiB - 4096);
  assert_ptr_equal(segment_of(q), seg); /* same mapping, resident pages reused */
  assert_int_equal(inst->large_cache_count, 0);
  free(q);
  free(keep);
}

static void test_big_mapping_is_split_for_a_small_request(void **state) {
  (void)state;
  void *keep = malloc(64 * MiB);
  uint8_t *p = malloc(20 * MiB);
  gpa_segment_t *seg = segment_of(p);
  size_t mapped = seg->mapped_size;
  free(p);
  uint8_t *q = malloc(2 * MiB);
  assert_ptr_equal(segment_of(q), seg);
  /* Cut at the first segment boundary past the request; the rest waits in
   * the cache as a mapping of its own, found by the segment map. */
  assert_int_equal(seg->mapped_size, GPA_SEGMENT_SIZE);
  assert_int_equal(inst->large_cache_count, 1);
  gpa_segment_t *tail = inst->large_cache[0];
  assert_ptr_equal(tail, (uint8_t *)seg + GPA_SEGMENT_SIZE);
  assert_int_equal(tail->mapped_size, mapped - GPA_SEGMENT_SIZE);
  assert_true(segmap_contains(tail));
  memset(q, 0x22, 2 * MiB);
  free(q);
  free(keep);
}

/* Fill each page's first byte with its index mixed with `seed`. */
static void mark_pages(uint8_t *p, size_t size, uint8_t seed) {
  for (size_t i = 0; i < size; i += 4096) p[i] = (uint8_t)((i >> 12) ^ seed);
}

static void test_cached_mappings_are_moved_together_for_a_bigger_request(void **state) {
  (void)state;
  void *keep = malloc(64 * MiB);
  uint8_t *a = malloc(6 * MiB);
  uint8_t *b = malloc(5 * MiB);
  mark_pages(a, 6 * MiB, 0xa0);
  mark_pages(b, 5 * MiB, 0xb0);
  size_t a_mapped = segment_of(a)->mapped_size;
  size_t mapped_before = os_mapped_bytes();
  free(a);
  free(b);
  assert_int_equal(inst->large_cache_count, 2);
  /* Neither holds 10 MiB alone: both move, largest first, into one mapping,
   * their pages (and so their old bytes) coming along without a fault. */
  uint8_t *q = malloc(10 * MiB);
  assert_non_null(q);
  assert_int_equal(inst->large_cache_count, 0);
  assert_true(segment_of(q)->mapped_size >= 10 * MiB);
  uint8_t *base = (uint8_t *)segment_of(q);
  for (size_t i = 0; i < 6 * MiB; i += 4096) /* a's bytes follow its header page */
    assert_int_equal(base[4096 + i], (uint8_t)((i >> 12) ^ 0xa0));
  assert_int_equal(base[a_mapped + 4096], (uint8_t)0xb0);
  /* Moving vacates the pieces: no more bytes mapped than before the frees. */
  assert_true(os_mapped_bytes() <= mapped_before);
  /* The block now spans two kernel mappings; growing it still keeps bytes. */
  q = realloc(q, 40 * MiB);
  assert_non_null(q);
  base = (uint8_t *)segment_of(q);
  for (size_t i = 0; i < 6 * MiB; i += 4096) assert_int_equal(base[4096 + i], (uint8_t)((i >> 12) ^ 0xa0));
  assert_int_equal(base[a_mapped + 4096], (uint8_t)0xb0);
  memset(q, 0x33, 40 * MiB);
  q = realloc(q, 9 * MiB);
  assert_non_null(q);
  assert_int_equal(q[9 * MiB - 1], 0x33);
  free(q);
  free(keep);
}

static void test_short_cache_is_topped_up_with_fresh_pages(void **state) {
  (void)state;
  void *keep = malloc(64 * MiB);
  uint8_t *a = malloc(3 * MiB);
  mark_pages(a, 3 * MiB, 0x5a);
  free(a);
  uint8_t *q = malloc(12 * MiB);
  assert_non_null(q);
  assert_int_equal(inst->large_cache_count, 0); /* the 3 MiB mapping was used */
  assert_int_equal(q[0], (uint8_t)0x5a);        /* its first page leads */
  for (size_t i = 4 * MiB; i < 12 * MiB; i += 4096) assert_int_equal(q[i], 0); /* fresh */
  memset(q, 0x44, 12 * MiB);
  free(q);
  free(keep);
}

static void test_cache_follows_live_bytes(void **state) {
  (void)state;
  enum { N = 40 };
  void *blocks[N];
  for (int i = 0; i < N; i++) blocks[i] = malloc(2 * MiB);
  for (int i = 0; i < N; i++) free(blocks[i]);
  /* Nothing live: at most the floor stays cached. */
  assert_true(inst->large_cache_bytes <= GPA_LARGE_CACHE_MIN_BYTES);
  assert_true(instance_trim(inst) || inst->large_cache_bytes == 0);
  assert_int_equal(inst->large_cache_count, 0);
}

static void test_realloc_moves_pages_and_keeps_bytes(void **state) {
  (void)state;
  uint8_t *p = malloc(5 * MiB);
  for (size_t i = 0; i < 5 * MiB; i += 4096) p[i] = (uint8_t)(i >> 12);
  uint8_t *q = realloc(p, 50 * MiB);
  assert_non_null(q);
  for (size_t i = 0; i < 5 * MiB; i += 4096) assert_int_equal(q[i], (uint8_t)(i >> 12));
  assert_int_equal(segment_of(q)->large_size, 50 * MiB);
  q = realloc(q, 5 * MiB); /* shrink in place */
  for (size_t i = 0; i < 5 * MiB; i += 4096) assert_int_equal(q[i], (uint8_t)(i >> 12));
  free(q);
}

static void test_overaligned_block(void **state) {
  (void)state;
  size_t before = atomic_load(&inst->large_count);
  void *p = aligned_alloc(16 * MiB, 100);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % (16 * MiB), 0);
  assert_false(segmap_contains(segment_of(p)));
  assert_true(large_overaligned_contains(p));
  assert_false(large_overaligned_contains((uint8_t *)p + 16));
  assert_int_equal(atomic_load(&inst->large_count), before + 1);
  free(p);
  assert_false(large_overaligned_contains(p));
  assert_int_equal(atomic_load(&inst->large_count), before);
}

/* ---- a vacated range may be taken at once --------------------------------
 * Once a range is unmapped (or its pages moved away), another thread may map
 * a segment there and register it: nothing the vacating thread does
 * afterwards may erase that entry, or a valid free of a block in the new
 * segment is called foreign.  The os layer's hook plays the other thread:
 * the moment `squat_target` is vacated, a segment is mapped there and
 * registered. */
static void *squat_target;
static uint8_t *squatter;

static void squat(void *addr, size_t size) {
  if (addr != squat_target || squatter != NULL || size < GPA_SEGMENT_SIZE) return;
  void *p = mmap(addr, GPA_SEGMENT_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return;
  squatter = p;
  segmap_insert((gpa_segment_t *)squatter);
}

static void squat_on(void *target) {
  squat_target = target;
  squatter = NULL;
  os_set_vacate_hook(squat);
}

/* The hook ran, and the segment it registered is still registered. */
static void squatter_survived(void) {
  os_set_vacate_hook(NULL);
  assert_ptr_equal(squatter, squat_target);
  assert_true(segmap_contains((gpa_segment_t *)squatter));
  segmap_remove((gpa_segment_t *)squatter);
  munmap(squatter, GPA_SEGMENT_SIZE);
}

/* A page mapped right after the block's mapping, so it cannot grow in place. */
static void *block_growth(gpa_segment_t *seg) {
  uint8_t *end = (uint8_t *)seg + seg->mapped_size;
  void *blocker = mmap(end, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (blocker == MAP_FAILED) {
    assert_int_equal(errno, EEXIST); /* something is there already */
    return NULL;
  }
  return blocker;
}

static void test_realloc_move_spares_a_segment_mapped_in_the_old_place(void **state) {
  (void)state;
  uint8_t *p = malloc(5 * MiB);
  assert_non_null(p);
  gpa_segment_t *seg = segment_of(p);
  void *blocker = block_growth(seg);
  squat_on(seg);
  uint8_t *q = realloc(p, 12 * MiB);
  assert_non_null(q);
  assert_ptr_not_equal(segment_of(q), seg); /* the pages moved */
  squatter_survived();
  assert_true(segmap_contains(segment_of(q)));
  if (blocker != NULL) munmap(blocker, 4096);
  free(q);
}

static void test_moved_pieces_spare_a_segment_mapped_in_their_place(void **state) {
  (void)state;
  void *keep = malloc(64 * MiB);
  uint8_t *a = malloc(6 * MiB);
  uint8_t *b = malloc(5 * MiB);
  gpa_segment_t *a_seg = segment_of(a);
  free(a);
  free(b);
  assert_int_equal(inst->large_cache_count, 2);
  squat_on(a_seg);
  uint8_t *q = malloc(10 * MiB); /* both pieces move into one mapping */
  assert_non_null(q);
  squatter_survived();
  free(q);
  free(keep);
}

static void test_unmapped_cache_spares_a_segment_mapped_in_its_place(void **state) {
  (void)state;
  uint8_t *p = malloc(6 * MiB);
  gpa_segment_t *seg = segment_of(p);
  free(p);
  assert_int_equal(inst->large_cache_count, 1);
  squat_on(seg);
  malloc_trim(0);
  assert_int_equal(inst->large_cache_count, 0);
  squatter_survived();
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_large_block_finds_its_header, setup_empty_cache),
    cmocka_unit_test_setup(test_freed_mapping_is_cached_and_reused, setup_empty_cache),
    cmocka_unit_test_setup(test_big_mapping_is_split_for_a_small_request, setup_empty_cache),
    cmocka_unit_test_setup(test_cached_mappings_are_moved_together_for_a_bigger_request, setup_empty_cache),
    cmocka_unit_test_setup(test_short_cache_is_topped_up_with_fresh_pages, setup_empty_cache),
    cmocka_unit_test_setup(test_cache_follows_live_bytes, setup_empty_cache),
    cmocka_unit_test_setup(test_realloc_moves_pages_and_keeps_bytes, setup_empty_cache),
    cmocka_unit_test_setup(test_overaligned_block, setup_empty_cache),
    cmocka_unit_test_setup(test_realloc_move_spares_a_segment_mapped_in_the_old_place, setup_empty_cache),
    cmocka_unit_test_setup(test_moved_pieces_spare_a_segment_mapped_in_their_place, setup_empty_cache),
    cmocka_unit_test_setup(test_unmapped_cache_spares_a_segment_mapped_in_its_place, setup_empty_cache),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* unit_size_class.c: the size-class table and its lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "size_class.h"

static void test_classes_ascend_in_multiples_of_16(void **state) {
  (void)state;
  assert_int_equal(size_class_block_size(0), 16);
  assert_int_equal(size_class_block_size(GPA_CLASS_COUNT - 1), GPA_SMALL_MAX);
  for (unsigned c = 0; c < GPA_CLASS_COUNT; c++) {
    assert_int_equal(size_class_block_size(c) % 16, 0);
    if (c > 0) assert_true(size_class_block_size(c) > size_class_block_size(c - 1));
  }
}

static void test_every_size_maps_to_smallest_fitting_class(void **state) {
  (void)state;
  for (size_t size = 0; size <= GPA_SMALL_MAX; size++) {
    unsigned c = size_class_of(size);
    assert_true(c < GPA_CLASS_COUNT);
    assert_true(size_class_block_size(c) >= size);
    if (c > 0) assert_true(size_class_block_size(c - 1) < size);
  }
}

static void test_waste_is_bounded(void **state) {
  (void)state;
  /* Above 64 bytes a block wastes at most a quarter of itself. */
  for (size_t size = 65; size <= GPA_SMALL_MAX; size++) {
    size_t block = size_class_block_size(size_class_of(size));
    assert_true((block - size) * 4 <= block);
  }
}

static void test_powers_of_two_are_classes(void **state) {
  (void)state;
  for (size_t p = 16; p <= GPA_SMALL_MAX; p <<= 1)
    assert_int_equal(size_class_block_size(size_class_of(p)), p);
}

static void test_aligned_class_is_a_multiple_of_alignment(void **state) {
  (void)state;
  for (size_t align = 16; align <= GPA_PAGE_SIZE; align <<= 1) {
    for (size_t size = 0; size <= 3 * align && size <= GPA_SMALL_MAX; size += 7) {
      unsigned c = size_class_for_aligned(size, align);
      assert_true(c < GPA_CLASS_COUNT);
      assert_true(size_class_block_size(c) >= size);
      assert_int_equal(size_class_block_size(c) % align, 0);
    }
  }
  assert_int_equal(size_class_for_aligned(GPA_SMALL_MAX + 1, 64), GPA_CLASS_COUNT);
  assert_int_equal(size_class_for_aligned(64, GPA_PAGE_SIZE * 2), GPA_CLASS_COUNT);
}

static void test_slab_shape(void **state) {
  (void)state;
  for (unsigned c = 0; c < GPA_CLASS_COUNT; c++) {
    unsigned pages = size_class_slab_pages(c);
    assert_true(pages >= 1 && pages <= GPA_SLAB_MAX_PAGES);
    size_t size = size_class_block_size(c);
    size_t blocks = pages * GPA_PAGE_SIZE / size;
    if (size <= GPA_SLAB_SINGLE_MIN) {
      assert_true(blocks >= GPA_SLAB_MIN_BLOCKS);
    } else { /* one block, filling its slab exactly */
      assert_int_equal(blocks, 1);
      assert_int_equal(pages * GPA_PAGE_SIZE, size);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_classes_ascend_in_multiples_of_16),
    cmocka_unit_test(test_every_size_maps_to_smallest_fitting_class),
    cmocka_unit_test(test_waste_is_bounded),
    cmocka_unit_test(test_powers_of_two_are_classes),
    cmocka_unit_test(test_aligned_class_is_a_multiple_of_alignment),
    cmocka_unit_test(test_slab_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* unit_os.c: the os layer: aligned reservations, purge, remap, errno, and
 * the failure-injection switch and the vacate hook. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "os.h"

static void test_page_size_is_power_of_two(void **state) {
  (void)state;
  size_t ps = os_page_size();
  assert_true(ps >= 4096);
  assert_int_equal(ps & (ps - 1), 0);
}

static void test_reserve_aligned_honours_alignment(void **state) {
  (void)state;
  size_t aligns[] = { 4096, 65536, (size_t)1 << 22, (size_t)1 << 24 };
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    size_t size = (size_t)1 << 22;
    uint8_t *p = os_reserve_aligned(size, aligns[i]);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p & (aligns[i] - 1), 0);
    /* Fresh memory is zero and writable end to end. */
    assert_int_equal(p[0], 0);
    assert_int_equal(p[size - 1], 0);
    p[0] = 1;
    p[size - 1] = 2;
    os_release(p, size);
  }
}

static void test_mapped_bytes_tracks_reservations(void **state) {
  (void)state;
  size_t before = os_mapped_bytes();
  void *p = os_reserve_aligned((size_t)8 << 20, (size_t)1 << 22);
  assert_non_null(p);
  assert_int_equal(os_mapped_bytes(), before + ((size_t)8 << 20));
  os_release(p, (size_t)8 << 20);
  assert_int_equal(os_mapped_bytes(), before);
}

static void test_purge_zeroes_pages(void **state) {
  (void)state;
  size_t size = 16 * os_page_size();
  uint8_t *p = os_reserve_aligned(size, os_page_size());
  assert_non_null(p);
  memset(p, 0x5a, size);
  size_t purged = os_purged_bytes();
  os_purge(p, size);
  assert_int_equal(os_purged_bytes(), purged + size);
  for (size_t i = 0; i < size; i += 997) assert_int_equal(p[i], 0);
  os_release(p, size);
}

static void test_errno_preserved_on_success(void **state) {
  (void)state;
  errno = 4242;
  void *p = os_reserve_aligned((size_t)1 << 22, (size_t)1 << 22);
  assert_non_null(p);
  os_purge(p, 4096);
  os_release(p, (size_t)1 << 22);
  assert_int_equal(errno, 4242);
}

static void test_remap_grows_in_place_or_moves_aligned(void **state) {
  (void)state;
  size_t seg = (size_t)1 << 22;
  uint8_t *p = os_reserve_aligned(seg, seg);
  assert_non_null(p);
  memset(p, 0x33, seg);
  size_t size = seg;
  if (os_remap_in_place(p, size, 2 * seg)) size = 2 * seg;
  uint8_t *q = os_remap_aligned(p, size, 16 * seg, seg);
  assert_non_null(q);
  assert_int_equal((uintptr_t)q & (seg - 1), 0);
  /* Pages moved, bytes kept; the grown part reads as zero. */
  assert_int_equal(q[0], 0x33);
  assert_int_equal(q[seg - 1], 0x33);
  assert_int_equal(q[16 * seg - 1], 0);
  os_release(q, 16 * seg);
}

static void test_move_pages_across_mappings(void **state) {
  (void)state;
  size_t seg = (size_t)1 << 22;
  /* Two mappings whose pages were touched separately stay two kernel
   * mappings once moved side by side; moving the pair again must still
   * carry every byte (older kernels refuse such a move in one call). */
  uint8_t *a = os_reserve_aligned(seg, seg);
  uint8_t *spacer = os_reserve_aligned(seg, seg);
  uint8_t *b = os_reserve_aligned(2 * seg, seg);
  uint8_t *pair = os_reserve_aligned(3 * seg, seg);
  assert_non_null(spacer);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(pair);
  /* The kernel joins neighbouring fresh mappings into one; the hole left by
   * the spacer keeps a and b apart, so their pages belong to two. */
  os_release(spacer, seg);
  memset(a, 0xa1, seg);
  memset(b, 0xb2, 2 * seg);
  size_t mapped = os_mapped_bytes();
  os_move_pages(a, seg, pair);
  os_move_pages(b, 2 * seg, pair + seg);
  assert_int_equal(os_mapped_bytes(), mapped - 3 * seg);
  uint8_t *moved = os_remap_aligned(pair, 3 * seg, 5 * seg, seg);
  assert_non_null(moved);
  assert_int_equal(moved[0], 0xa1);
  assert_int_equal(moved[seg - 1], 0xa1);
  assert_int_equal(moved[seg], 0xb2);
  assert_int_equal(moved[3 * seg - 1], 0xb2);
  assert_int_equal(moved[3 * seg], 0); /* the grown part is fresh */
  os_release(moved, 5 * seg);
}

static void test_failure_injection(void **state) {
  (void)state;
  os_fail_after(1);
  void *first = os_reserve_aligned(65536, 65536);
  errno = 0;
  void *second = os_reserve_aligned(65536, 65536);
  int err = errno;
  os_fail_after(-1);
  assert_non_null(first);
  assert_null(second);
  assert_int_equal(err, ENOMEM);
  void *third = os_reserve_aligned(65536, 65536);
  assert_non_null(third);
  os_release(first, 65536);
  os_release(third, 65536);
}

static void test_overflowing_request_fails(void **state) {
  (void)state;
  errno = 0;
  assert_null(os_reserve_aligned(SIZE_MAX - 4095, 1u << 22));
  assert_int_equal(errno, ENOMEM);
}

/* The vacate hook sees each range given back or moved away from, once. */
static void *vacated_addr[4];
static size_t vacated_size[4];
static size_t vacated_count;

static void record_vacated(void *addr, size_t size) {
  if (vacated_count < 4) {
    vacated_addr[vacated_count] = addr;
    vacated_size[vacated_count] = size;
  }
  vacated_count++;
}

static void test_vacate_hook_sees_released_and_moved_ranges(void **state) {
  (void)state;
  size_t seg = (size_t)1 << 22;
  uint8_t *a = os_reserve_aligned(seg, seg);
  uint8_t *b = os_reserve_aligned(seg, seg);
  assert_non_null(a);
  assert_non_null(b);
  vacated_count = 0;
  os_set_vacate_hook(record_vacated);
  os_move_pages(a, seg, b);
  os_release(b, seg);
  os_set_vacate_hook(NULL);
  assert_int_equal(vacated_count, 2);
  assert_ptr_equal(vacated_addr[0], a);
  assert_int_equal(vacated_size[0], seg);
  assert_ptr_equal(vacated_addr[1], b);
  assert_int_equal(vacated_size[1], seg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_page_size_is_power_of_two),
    cmocka_unit_test(test_reserve_aligned_honours_alignment),
    cmocka_unit_test(test_mapped_bytes_tracks_reservations),
    cmocka_unit_test(test_purge_zeroes_pages),
    cmocka_unit_test(test_errno_preserved_on_success),
    cmocka_unit_test(test_remap_grows_in_place_or_moves_aligned),
    cmocka_unit_test(test_move_pages_across_mappings),
    cmocka_unit_test(test_failure_injection),
    cmocka_unit_test(test_overflowing_request_fails),
    cmocka_unit_test(test_vacate_hook_sees_released_and_moved_ranges),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

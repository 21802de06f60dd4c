/*
 * array_u32.c: run() receives the allocator and builds a growable array of
 * uint32_t (the first ten squares), appending one element at a time so the
 * array grows through several reallocations.
 *
 * expected stdout: "0 1 4 9 16 25 36 49 64 81"
 */
#include <gpa.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

static int run(gpa_allocator_t allocator) {
  gpa_array_t squares;
  gpa_array_init_typed(&squares, allocator, uint32_t);
  for (uint32_t i = 0; i < 10; i++) {
    uint32_t square = i * i;
    if (gpa_array_append(&squares, &square) != 0) {
      gpa_array_deinit(&squares);
      return 1;
    }
  }
  const uint32_t *items = gpa_array_items(&squares, uint32_t);
  for (size_t i = 0; i < squares.len; i++) printf(i == 0 ? "%" PRIu32 : " %" PRIu32, items[i]);
  printf("\n");
  gpa_array_deinit(&squares);
  return 0;
}

int main(void) {
  gpa_t gpa;
  if (gpa_init(&gpa, NULL) != 0) return 1;
  int rc = run(gpa_allocator(&gpa));
  return gpa_deinit(&gpa) == GPA_OK ? rc : 1;
}

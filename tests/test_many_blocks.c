/* test_many_blocks.c: many live blocks of a few hundred KiB at once.
 *
 * The kernel limits a process to vm.max_map_count mappings (65,530 by
 * default).  Blocks of this size must not each cost a mapping of their own,
 * or a program runs out of mappings with memory to spare: 200,000 live
 * 300 KiB blocks (one byte of each touched, about 800 MB resident) must all
 * be allocated, with the process's mappings far below the limit. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define BLOCK_COUNT 200000
#define BLOCK_SIZE ((size_t)300 << 10)
/* "Far below": a quarter of the limit leaves the program three quarters
 * for its own mappings. */
#define MAPPING_SHARE 4

static long read_long(const char *path) {
  FILE *f = fopen(path, "r");
  long value = -1;
  if (f != NULL) {
    if (fscanf(f, "%ld", &value) != 1) value = -1;
    fclose(f);
  }
  return value;
}

static long mapping_count(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  long lines = 0;
  int c;
  while ((c = fgetc(f)) != EOF)
    if (c == '\n') lines++;
  fclose(f);
  return lines;
}

static void test_many_live_blocks_share_mappings(void **state) {
  (void)state;
  long limit = read_long("/proc/sys/vm/max_map_count");
  assert_true(limit > 0);
  uint8_t **blocks = calloc(BLOCK_COUNT, sizeof *blocks);
  assert_non_null(blocks);
  size_t failed = 0, first_failure = 0;
  int failure_errno = 0;
  for (size_t i = 0; i < BLOCK_COUNT; i++) {
    blocks[i] = malloc(BLOCK_SIZE);
    if (blocks[i] == NULL) {
      if (failed++ == 0) {
        first_failure = i;
        failure_errno = errno;
      }
      continue;
    }
    blocks[i][0] = (uint8_t)i; /* one resident page each */
  }
  long peak_mappings = mapping_count();
  for (size_t i = 0; i < BLOCK_COUNT; i++)
    if (blocks[i] != NULL && blocks[i][0] != (uint8_t)i) fail_msg("block %zu lost its byte", i);
  for (size_t i = 0; i < BLOCK_COUNT; i++) free(blocks[i]);
  free(blocks);
  fprintf(stderr, "%d blocks of %zu bytes: %zu failed (the first: #%zu, errno %d), %ld mappings at the peak (limit %ld)\n",
          BLOCK_COUNT, BLOCK_SIZE, failed, first_failure, failure_errno, peak_mappings, limit);
  assert_int_equal(failed, 0);
  assert_true(peak_mappings < limit / MAPPING_SHARE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_many_live_blocks_share_mappings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_overcommit.c: requests the machine can never back fail at once.
 *
 * Memory is committed under the kernel's overcommit policy
 * (/proc/sys/vm/overcommit_memory): in mode 0 its heuristic refuses any
 * single request larger than RAM plus swap, in mode 2 anything past
 * CommitLimit; mode 1 accepts everything, and these checks are skipped.
 * The policy is read, never changed.  Every call must then answer NULL
 * with ENOMEM (posix_memalign: the code, *memptr untouched), and realloc
 * must leave the old block as it was. */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* The kernel's modes (Documentation/mm/overcommit-accounting.rst). */
enum { OVERCOMMIT_GUESS = 0, OVERCOMMIT_ALWAYS = 1, OVERCOMMIT_NEVER = 2 };

/* A request well within any machine these tests run on, left untouched. */
#define POSSIBLE_SIZE GiB

/* Called through pointers: gcc knows these as builtins and would warn
 * about (or fold) requests larger than any object. */
static void *(*volatile malloc_fn)(size_t) = malloc;
static void *(*volatile calloc_fn)(size_t, size_t) = calloc;
static void *(*volatile realloc_fn)(void *, size_t) = realloc;
static void *(*volatile aligned_alloc_fn)(size_t, size_t) = aligned_alloc;
static void *(*volatile memalign_fn)(size_t, size_t) = memalign;

static int overcommit_mode(void) {
  FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
  int mode = -1;
  if (f != NULL) {
    if (fscanf(f, "%d", &mode) != 1) mode = -1;
    fclose(f);
  }
  return mode;
}

/* A /proc/meminfo field in bytes, or 0 if absent. */
static size_t meminfo_bytes(const char *field) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (f == NULL) return 0;
  char line[256];
  size_t kib = 0, len = strlen(field);
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, field, len) == 0 && line[len] == ':') {
      kib = strtoull(line + len + 1, NULL, 10);
      break;
    }
  fclose(f);
  return kib * KiB;
}

/* A size the policy must refuse, or 0 where it refuses nothing. */
static size_t impossible_size(void) {
  int mode = overcommit_mode();
  size_t backing = meminfo_bytes("MemTotal") + meminfo_bytes("SwapTotal");
  if (mode == OVERCOMMIT_GUESS) return 2 * backing;
  if (mode == OVERCOMMIT_NEVER) return 2 * (backing > meminfo_bytes("CommitLimit") ? backing : meminfo_bytes("CommitLimit"));
  return 0;
}

#define SKIP_UNLESS_REFUSED(size)                                                \
  do {                                                                           \
    if ((size) == 0) {                                                           \
      fprintf(stderr, "overcommit_memory is %d: nothing is refused\n", overcommit_mode()); \
      skip();                                                                    \
    }                                                                            \
  } while (0)

#define EXPECT_ENOMEM(call)                                                      \
  do {                                                                           \
    errno = 0;                                                                   \
    void *result_ = (call);                                                      \
    int err_ = errno;                                                            \
    if (result_ != NULL) free(result_);                                          \
    if (result_ != NULL) fail_msg("%s succeeded", #call);                        \
    assert_int_equal(err_, ENOMEM);                                              \
  } while (0)

static void test_impossible_allocations_fail(void **state) {
  (void)state;
  size_t size = impossible_size();
  SKIP_UNLESS_REFUSED(size);
  EXPECT_ENOMEM(malloc_fn(size));
  EXPECT_ENOMEM(calloc_fn(1, size));
  EXPECT_ENOMEM(aligned_alloc_fn(4096, size));
  EXPECT_ENOMEM(aligned_alloc_fn(64 * MiB, size)); /* past the segment: a mapping of its own */
  EXPECT_ENOMEM(memalign_fn(256 * KiB, size));
  void *untouched = &untouched;
  void *p = untouched;
  assert_int_equal(posix_memalign(&p, 64, size), ENOMEM);
  assert_ptr_equal(p, untouched);
  assert_int_equal(posix_memalign(&p, 8 * MiB, size), ENOMEM);
  assert_ptr_equal(p, untouched);
}

static void expect_realloc_refused(size_t old_size, size_t size) {
  uint8_t *p = malloc(old_size);
  assert_non_null(p);
  for (size_t i = 0; i < old_size; i++) p[i] = (uint8_t)(i * 13 + 1);
  EXPECT_ENOMEM(realloc_fn(p, size));
  for (size_t i = 0; i < old_size; i++)
    if (p[i] != (uint8_t)(i * 13 + 1)) fail_msg("byte %zu of the %zu-byte block changed", i, old_size);
  free(p);
}

static void test_impossible_realloc_keeps_the_block(void **state) {
  (void)state;
  size_t size = impossible_size();
  SKIP_UNLESS_REFUSED(size);
  expect_realloc_refused(100, size);     /* a small block */
  expect_realloc_refused(8 * MiB, size); /* a large one: mremap would grow it */
}

/* The refusal is about the one request: a big one the machine can back
 * (never touched, so it costs no memory) still succeeds, and so does
 * everything afterwards. */
static void test_possible_allocation_succeeds(void **state) {
  (void)state;
  if (overcommit_mode() == OVERCOMMIT_NEVER &&
      meminfo_bytes("CommitLimit") < meminfo_bytes("Committed_AS") + 2 * POSSIBLE_SIZE) {
    fprintf(stderr, "strict overcommit without %zu bytes to spare\n", 2 * POSSIBLE_SIZE);
    skip();
  }
  void *big = malloc_fn(POSSIBLE_SIZE);
  assert_non_null(big);
  void *aligned = aligned_alloc_fn(64 * MiB, POSSIBLE_SIZE);
  assert_non_null(aligned);
  free(aligned);
  big = realloc_fn(big, POSSIBLE_SIZE + 64 * MiB);
  assert_non_null(big);
  free(big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_impossible_allocations_fail),
    cmocka_unit_test(test_impossible_realloc_keeps_the_block),
    cmocka_unit_test(test_possible_allocation_succeeds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

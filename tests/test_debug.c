/*
 * test_debug.c: the debug layer through gpa_t instances whose config asks
 * for it: each misuse in a forked child, with the report's kind, sizes and
 * stacks (the test's own function names, found through dladdr: the test is
 * linked with exported symbols and frame pointers) and the exit status;
 * leaks at gpa_deinit, grouping and counts; the quarantine, fills, the
 * memory limit, the log and the statistics.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>

#include "child_support.h"
#include "gpa.h"

#define NOINLINE __attribute__((noinline))

/* Keeps the compiler from merging or inlining the named frames. */
#define BARRIER() __asm__ volatile("" ::: "memory")

static gpa_config_t debug_config(void) {
  gpa_config_t c = GPA_CONFIG_DEFAULT;
  c.debug.checks = true;
  c.debug.frames = 16;
  c.debug.canaries = true;
  return c;
}

/* The child's report must contain each of the strings, in order. */
static void assert_report_has(const outcome_t *out, const char *const *parts, size_t n) {
  print_message("child stderr:\n%s", out->err);
  const char *at = out->err;
  for (size_t i = 0; i < n; i++) {
    const char *found = strstr(at, parts[i]);
    if (found == NULL) print_message("missing (in order): \"%s\"\n", parts[i]);
    assert_non_null(found);
    at = found + strlen(parts[i]);
  }
}

static void assert_aborted(const outcome_t *out) {
  assert_true(WIFSIGNALED(out->status));
  assert_int_equal(WTERMSIG(out->status), SIGABRT);
}

/* Run `child`; it must abort with a report holding the strings, in order. */
static void expect_abort_report(action_fn child, const char *const *parts, size_t n) {
  outcome_t out;
  run_child(child, NULL, &out);
  assert_aborted(&out);
  assert_report_has(&out, parts, n);
}
#define EXPECT_ABORT_REPORT(child, ...)                                         \
  do {                                                                          \
    const char *const parts_[] = {__VA_ARGS__};                                 \
    expect_abort_report(child, parts_, sizeof parts_ / sizeof parts_[0]);       \
  } while (0)

/* A debug instance in `gpa` with config `c`, and its allocator. */
static gpa_allocator_t debug_instance(gpa_t *gpa, gpa_config_t c) {
  assert_int_equal(gpa_init(gpa, &c), 0);
  return gpa_allocator(gpa);
}

/* ---- double free: three stacks -------------------------------------------- */

NOINLINE void *alloc_site(gpa_allocator_t a) {
  void *p = gpa_raw_alloc(a, 24, 0);
  BARRIER();
  return p;
}

NOINLINE void first_free_site(gpa_allocator_t a, void *p) {
  gpa_raw_free(a, p, 24, 0);
  BARRIER();
}

NOINLINE void second_free_site(gpa_allocator_t a, void *p) {
  gpa_raw_free(a, p, 24, 0);
  BARRIER();
}

void double_free_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.quarantine = 1 << 20;
  gpa_allocator_t a = debug_instance(&gpa, c);
  void *p = alloc_site(a);
  first_free_site(a, p);
  second_free_site(a, p);
}

static void test_double_free_reports_three_stacks(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(double_free_child, "gpa: gpa_free(): double free of 0x", "(a 24-byte block at 0x",
                         "allocated by thread", "in alloc_site+",
                         "first freed by thread", "in first_free_site+",
                         "freed again by thread", "in second_free_site+");
}

/* ---- invalid frees ------------------------------------------------------------ */

void interior_free_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_allocator_t a = debug_instance(&gpa, debug_config());
  char *p = alloc_site(a);
  gpa_raw_free(a, p + 8, 16, 0);
}

static void test_interior_pointer_names_block_and_offset(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(interior_free_child, "gpa: gpa_free(): invalid pointer 0x", ": 8 byte(s) inside a 24-byte block at 0x",
                         "allocated by thread", "in alloc_site+", "gpa_free called by thread",
                         "in interior_free_child+");
}

void aligned_interior_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_allocator_t a = debug_instance(&gpa, debug_config());
  char *p = gpa_raw_alloc(a, 24, 256);
  assert_int_equal((uintptr_t)p % 256, 0);
  gpa_raw_free(a, p + 8, 16, 0);
}

static void test_report_gives_the_alignment_asked_for(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(aligned_interior_child, ": 8 byte(s) inside a 24-byte block (aligned to 256) at 0x",
                      "in aligned_interior_child+");
}

void foreign_free_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  assert_int_equal(gpa_init(&gpa, &c), 0);
  static char not_ours[64];
  gpa_raw_free(gpa_allocator(&gpa), not_ours, 64, 0);
}

static void test_foreign_pointer_is_invalid(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(foreign_free_child, "gpa: gpa_free(): invalid pointer 0x", ": not allocated by gpa\n",
                         "in foreign_free_child+");
}

void other_instance_child(void *arg) {
  (void)arg;
  gpa_t one, two;
  gpa_config_t c = debug_config();
  assert_int_equal(gpa_init(&one, &c), 0);
  assert_int_equal(gpa_init(&two, &c), 0);
  void *p = alloc_site(gpa_allocator(&one));
  gpa_raw_free(gpa_allocator(&two), p, 24, 0);
}

static void test_block_of_another_instance_is_invalid(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(other_instance_child, "invalid pointer 0x", ": a block of another allocator instance");
}

/* checks off: sizes are not held to account and frees keep no stack, but
 * a double free is still caught. */
void unchecked_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.checks = false;
  c.debug.quarantine = 1 << 20;
  gpa_allocator_t a = debug_instance(&gpa, c);
  void *q = gpa_raw_alloc(a, 10, 0);
  gpa_raw_free(a, q, 12, 0); /* no report */
  void *p = alloc_site(a);
  first_free_site(a, p);
  second_free_site(a, p);
}

static void test_checks_off_keeps_double_free_reports(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(unchecked_child, "gpa: gpa_free(): double free of 0x", "in alloc_site+",
                      "first freed by thread", "(no stack recorded)", "freed again by thread",
                      "in second_free_site+");
}

/* ---- size mismatch ------------------------------------------------------------- */

void size_mismatch_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_allocator_t a = debug_instance(&gpa, debug_config());
  void *p = gpa_raw_alloc(a, 10, 0);
  gpa_raw_free(a, p, 12, 0);
}

static void test_size_mismatch_gives_both_sizes(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(size_mismatch_child, "gpa: gpa_free(): size mismatch for 0x",
                         ": allocation size 10 byte(s) does not match free size 12\n",
                         "allocated by thread", "in size_mismatch_child+", "gpa_free called by thread",
                         "in size_mismatch_child+");
}

/* ---- overflow ---------------------------------------------------------------------- */

NOINLINE void write_one_past(char *p, size_t n) {
  p[n] = 'x';
  BARRIER();
}

void overflow_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_allocator_t a = debug_instance(&gpa, debug_config());
  char *p = alloc_site(a);
  write_one_past(p, 24);
  gpa_raw_free(a, p, 24, 0);
}

static void test_overflow_found_at_free(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(overflow_child, "gpa: heap buffer overflow: 1 byte(s) written past the end of a 24-byte block at 0x",
                         ", found by gpa_free\n", "allocated by thread", "in alloc_site+");
}

void overflow_at_deinit_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  assert_int_equal(gpa_init(&gpa, &c), 0);
  char *p = alloc_site(gpa_allocator(&gpa));
  memset(p + 24, 0, 5); /* five bytes past the end, never freed */
  gpa_deinit(&gpa);
}

static void test_overflow_of_live_block_found_at_deinit(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(overflow_at_deinit_child, "heap buffer overflow: 5 byte(s) written past the end of a 24-byte block",
                         "found by gpa_deinit", "in alloc_site+");
}

/* ---- write after free: the quarantine's fill --------------------------------------------- */

NOINLINE void write_after_free_site(char *p) {
  p[3] = 7;
  BARRIER();
}

void write_after_free_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.free_fill = true;
  c.debug.quarantine = 1 << 20;
  gpa_allocator_t a = debug_instance(&gpa, c);
  char *p = alloc_site(a);
  first_free_site(a, p);
  write_after_free_site(p);
  gpa_deinit(&gpa); /* the quarantine is verified as it drains */
}

static void test_write_after_free_found_when_quarantine_drains(void **state) {
  (void)state;
  EXPECT_ABORT_REPORT(write_after_free_child, "gpa: write after free: 1 byte(s) changed from offset 3 of a 24-byte block at 0x",
                         "freed by thread", "in first_free_site+", "allocated by thread", "in alloc_site+");
}

static void test_freed_block_is_filled_and_kept_out_of_use(void **state) {
  (void)state;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.free_fill = true;
  c.debug.quarantine = 1 << 20;
  gpa_allocator_t a = debug_instance(&gpa, c);
  unsigned char *p = gpa_raw_alloc(a, 40, 0);
  memset(p, 1, 40);
  gpa_raw_free(a, p, 40, 0);
  for (size_t i = 0; i < 40; i++) assert_int_equal(p[i], GPA_DEBUG_FREE_BYTE);
  /* Quarantined: the next blocks of the size are other addresses. */
  for (int i = 0; i < 100; i++) {
    void *q = gpa_raw_alloc(a, 40, 0);
    assert_ptr_not_equal(q, p);
    gpa_raw_free(a, q, 40, 0);
  }
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

/* ---- leaks at gpa_deinit ------------------------------------------------------------------ */

NOINLINE void *leak_small(gpa_allocator_t a) {
  void *p = gpa_raw_alloc(a, 32, 0);
  BARRIER();
  return p;
}

NOINLINE void *leak_big(gpa_allocator_t a) {
  void *p = gpa_raw_alloc(a, 100, 0);
  BARRIER();
  return p;
}

void leaks_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.leaks = true;
  gpa_allocator_t a = debug_instance(&gpa, c);
  for (volatile int i = 0; i < 3; i++) leak_small(a); /* one call site: one group */
  leak_big(a);
  void *freed = leak_small(a);
  gpa_raw_free(a, freed, 32, 0);
  gpa_status_t s = gpa_deinit(&gpa);
  /* The status and counts, as the exit status: 1 when right. */
  _exit(s == GPA_LEAK && gpa.leaked_blocks == 4 && gpa.leaked_bytes == 196 ? 1 : 2);
}

static void test_leaks_at_deinit_grouped_largest_first(void **state) {
  (void)state;
  outcome_t out;
  run_child(leaks_child, NULL, &out);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 1);
  const char *parts[] = {"gpa: leak report for the gpa_t at 0x", ": 4 block(s) still live at gpa_deinit\n",
                         "\nDirect leak of 100 byte(s) in 1 object(s) allocated from:\n", "in leak_big+",
                         "\nDirect leak of 96 byte(s) in 3 object(s) allocated from:\n", "in leak_small+",
                         "\nSUMMARY: gpa: 196 byte(s) leaked in 4 allocation(s).\n"};
  assert_report_has(&out, parts, sizeof parts / sizeof parts[0]);
  /* Only the report: the freed block's stack is not in it twice. */
  assert_null(strstr(strstr(out.err, "in leak_small+") + 1, "in leak_small+"));
}

static void test_no_report_without_leaks(void **state) {
  (void)state;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.leaks = true;
  gpa_allocator_t a = debug_instance(&gpa, c);
  void *p = gpa_raw_alloc(a, 64, 0);
  assert_int_equal(gpa_live_count(&gpa), 1);
  assert_int_equal(gpa_live_bytes(&gpa), 64);
  assert_true(gpa_owns(&gpa, p));
  gpa_raw_free(a, p, 64, 0);
  assert_false(gpa_owns(&gpa, p));
  assert_int_equal(gpa_live_count(&gpa), 0);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
  assert_int_equal(gpa.leaked_blocks, 0);
}

/* ---- options that change what the program sees ------------------------------------------- */

static void test_alloc_fill_zeroing_and_alignment(void **state) {
  (void)state;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.alloc_fill = true;
  gpa_allocator_t a = debug_instance(&gpa, c);
  unsigned char *p = gpa_raw_alloc(a, 50, 0);
  for (size_t i = 0; i < 50; i++) assert_int_equal(p[i], GPA_DEBUG_ALLOC_BYTE);
  unsigned char *z = gpa_raw_alloc_zeroed(a, 5, 10, 0);
  for (size_t i = 0; i < 50; i++) assert_int_equal(z[i], 0);
  for (size_t align = 16; align <= 8192; align *= 2) {
    void *q = gpa_raw_alloc(a, 24, align);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % align, 0);
    gpa_raw_free(a, q, 24, align);
  }
  /* Large blocks go through the layer too. */
  unsigned char *big = gpa_raw_alloc(a, 1 << 20, 0);
  assert_non_null(big);
  big[(1 << 20) - 1] = 1;
  gpa_raw_free(a, big, 1 << 20, 0);
  gpa_raw_free(a, p, 50, 0);
  gpa_raw_free(a, z, 50, 0);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

/* Alignments from half a segment (2 MiB) up: the core hands such blocks
 * out at the start of a mapping of their own or at a segment's middle, and
 * the record goes a whole alignment before the program's bytes.  Each size
 * is an odd one, so the guard bytes are checked too. */
#define MIB ((size_t)1 << 20)
static const size_t big_alignments[] = {2 * MIB, 4 * MIB, 8 * MIB, 64 * MIB};
#define BIG_ALIGNMENTS (sizeof big_alignments / sizeof big_alignments[0])

NOINLINE void *leak_big_aligned(gpa_allocator_t a, size_t align) {
  void *p = gpa_raw_alloc(a, 300, align);
  BARRIER();
  return p;
}

/* Every operation on such blocks; exits 0 when all went as they should,
 * else with the number of the step that did not (an abort: the layer did
 * not find its record). */
void big_alignment_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.leaks = true;
  c.debug.quarantine = 1 << 20; /* freed blocks wait there, then go back to the core */
  gpa_allocator_t a = debug_instance(&gpa, c);
  for (size_t i = 0; i < BIG_ALIGNMENTS; i++) {
    size_t align = big_alignments[i];
    unsigned char *p = gpa_raw_alloc(a, 1001, align);
    if (p == NULL || (uintptr_t)p % align != 0) _exit(10);
    memset(p, 'b', 1001);
    if (!gpa_owns(&gpa, p) || gpa_live_bytes(&gpa) != 1001) _exit(11);
    if (!gpa_raw_resize(a, p, 1001, align, 999) || gpa_live_bytes(&gpa) != 999) _exit(12);
    unsigned char *q = gpa_raw_realloc(a, p, 999, 3000, 1, align);
    if (q == NULL || (uintptr_t)q % align != 0) _exit(13);
    for (size_t k = 0; k < 999; k++)
      if (q[k] != 'b') _exit(14);
    if (gpa_owns(&gpa, p) && p != q) _exit(15);
    gpa_raw_free(a, q, 3000, align);
    if (gpa_live_count(&gpa) != 0) _exit(16);
  }
  void *kept = leak_big_aligned(a, 8 * MIB);
  if (kept == NULL) _exit(17);
  gpa_status_t s = gpa_deinit(&gpa);
  _exit(s == GPA_LEAK && gpa.leaked_blocks == 1 && gpa.leaked_bytes == 300 ? 0 : 18);
}

static void test_blocks_aligned_to_half_a_segment_and_more(void **state) {
  (void)state;
  outcome_t out;
  run_child(big_alignment_child, NULL, &out);
  print_message("child stderr:\n%s", out.err);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 0);
  const char *parts[] = {"gpa: leak report for the gpa_t at 0x", ": 1 block(s) still live at gpa_deinit\n",
                         "\nDirect leak of 300 byte(s) in 1 object(s) allocated from:\n", "in leak_big_aligned+"};
  assert_report_has(&out, parts, sizeof parts / sizeof parts[0]);
}

static void test_resize_in_place_keeps_guard(void **state) {
  (void)state;
  gpa_t gpa;
  gpa_allocator_t a = debug_instance(&gpa, debug_config());
  char *p = gpa_raw_alloc(a, 100, 0);
  memset(p, 'a', 100);
  assert_true(gpa_raw_resize(a, p, 100, 0, 90));
  assert_int_equal(gpa_live_bytes(&gpa), 90);
  /* gpa_realloc growing past the block moves it, the bytes kept. */
  char *q = gpa_raw_realloc(a, p, 90, 5000, 1, 0);
  assert_non_null(q);
  for (int i = 0; i < 90; i++) assert_int_equal(q[i], 'a');
  gpa_raw_free(a, q, 5000, 0);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

static void test_memory_limit_refuses_with_enomem(void **state) {
  (void)state;
  char path[] = "/tmp/gpa-debug-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.memory_limit = 1000;
  c.debug.log_path = path;
  gpa_allocator_t a = debug_instance(&gpa, c);
  void *p = gpa_raw_alloc(a, 600, 0);
  assert_non_null(p);
  errno = 0;
  assert_null(gpa_raw_alloc(a, 600, 0));
  assert_int_equal(errno, ENOMEM);
  void *q = gpa_raw_alloc(a, 400, 0); /* exactly at the limit */
  assert_non_null(q);
  gpa_raw_free(a, p, 600, 0);
  gpa_raw_free(a, q, 400, 0);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
  char buf[512] = {0};
  fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  assert_true(read(fd, buf, sizeof buf - 1) > 0);
  close(fd);
  unlink(path);
  assert_non_null(strstr(buf, "gpa: gpa_alloc(600) refused: 600 byte(s) live, memory limit 1000 byte(s)"));
}

void continue_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.continue_on_error = true;
  c.debug.quarantine = 1 << 20;
  gpa_allocator_t a = debug_instance(&gpa, c);
  void *p = alloc_site(a);
  first_free_site(a, p);
  second_free_site(a, p);
  gpa_raw_free(a, p, 24, 0);
  _exit(gpa_deinit(&gpa) == GPA_OK ? 3 : 4);
}

static void test_continue_on_error_reports_and_goes_on(void **state) {
  (void)state;
  outcome_t out;
  run_child(continue_child, NULL, &out);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 3);
  const char *parts[] = {"double free of 0x", "in second_free_site+", "double free of 0x"};
  assert_report_has(&out, parts, sizeof parts / sizeof parts[0]);
}

void verbose_stats_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.verbose = true;
  c.debug.stats = true;
  gpa_allocator_t a = debug_instance(&gpa, c);
  void *p = alloc_site(a);
  void *q = gpa_raw_alloc(a, 3000, 0);
  gpa_raw_free(a, p, 24, 0);
  gpa_stats_print(&gpa);
  gpa_raw_free(a, q, 3000, 0);
  gpa_deinit(&gpa);
}

static void test_verbose_log_and_statistics(void **state) {
  (void)state;
  outcome_t out;
  run_child(verbose_stats_child, NULL, &out);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 0);
  const char *parts[] = {"gpa: gpa_alloc(24) = 0x", "in alloc_site+",
                         "gpa: gpa_alloc(3000) = 0x", "gpa: gpa_free(0x", ") of 24 byte(s)",
                         "gpa: statistics for the gpa_t at 0x", "live now:     3000 byte(s) in 1 block(s)",
                         "peak:         3024 byte(s), 2 block(s)", "total:        2 allocation(s) of 3024 byte(s), 1 free(s)",
                         "live now:     0 byte(s) in 0 block(s)"};
  assert_report_has(&out, parts, sizeof parts / sizeof parts[0]);
}

/* Without stats=1 the live figures still come (from the blocks
 * themselves), the totals are said not to be kept, and the table's rows
 * show the live blocks. */
void stats_unkept_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_allocator_t a = debug_instance(&gpa, debug_config());
  void *p = gpa_raw_alloc(a, 24, 0);
  void *q = gpa_raw_alloc(a, 100, 0);
  void *big = gpa_raw_alloc(a, 2000000, 0); /* a large block */
  gpa_raw_free(a, p, 24, 0);
  gpa_stats_print(&gpa);
  gpa_raw_free(a, q, 100, 0);
  gpa_raw_free(a, big, 2000000, 0);
  gpa_deinit(&gpa);
}

static void test_statistics_without_stats_count_live_blocks(void **state) {
  (void)state;
  outcome_t out;
  run_child(stats_unkept_child, NULL, &out);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 0);
  const char *parts[] = {"live now:     2000100 byte(s) in 2 block(s)", "peak:         not kept",
                         "total:        not kept (stats=1 keeps it), 0 refused", "     large             0           1"};
  assert_report_has(&out, parts, sizeof parts / sizeof parts[0]);
}

/* ---- threads: counts and leaks while other threads allocate ------------------ */

#define WORKERS 4
#define WORKER_ROUNDS 20000
#define WORKER_KEEPS 10 /* blocks each worker leaves live, of 40 bytes */

typedef struct worker_arg {
  gpa_allocator_t a;
  volatile int *started;
} worker_arg_t;

NOINLINE void *worker_keeps_some(void *arg) {
  worker_arg_t *w = arg;
  __atomic_add_fetch(w->started, 1, __ATOMIC_SEQ_CST);
  for (int i = 0; i < WORKER_ROUNDS; i++) {
    size_t n = (size_t)(i % 700) + 1;
    void *p = gpa_raw_alloc(w->a, n, 0);
    if (p == NULL) return (void *)1;
    gpa_raw_free(w->a, p, n, 0);
  }
  for (int i = 0; i < WORKER_KEEPS; i++)
    if (gpa_raw_alloc(w->a, 40, 0) == NULL) return (void *)1;
  return NULL;
}

/* gpa_live_count walks every block while workers allocate and free (each
 * walk waits for their calls under way and holds back the next); once they
 * have ended, the count and the leaks at deinit are exact. */
void threads_child(void *arg) {
  (void)arg;
  gpa_t gpa;
  gpa_config_t c = debug_config();
  c.debug.leaks = true;
  gpa_allocator_t a = debug_instance(&gpa, c);
  void *mine = gpa_raw_alloc(a, 1000, 0);
  volatile int started = 0;
  worker_arg_t w = {.a = a, .started = &started};
  pthread_t t[WORKERS];
  for (int i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker_keeps_some, &w);
  size_t walks = 0, most = 0;
  while (started < WORKERS) sched_yield();
  for (; walks < 200; walks++) {
    size_t live = gpa_live_count(&gpa); /* mine, at most one in flight per worker, and kept ones */
    if (live > most) most = live;
    if (live < 1 || live > 1 + WORKERS * (WORKER_KEEPS + 1)) _exit(10);
  }
  for (int i = 0; i < WORKERS; i++) {
    void *failed;
    pthread_join(t[i], &failed);
    if (failed != NULL) _exit(11);
  }
  if (gpa_live_count(&gpa) != 1 + WORKERS * WORKER_KEEPS) _exit(12);
  if (gpa_live_bytes(&gpa) != 1000 + WORKERS * WORKER_KEEPS * 40) _exit(13);
  gpa_raw_free(a, mine, 1000, 0);
  gpa_status_t r = gpa_deinit(&gpa);
  if (r != GPA_LEAK || gpa.leaked_blocks != WORKERS * WORKER_KEEPS || gpa.leaked_bytes != WORKERS * WORKER_KEEPS * 40)
    _exit(14);
  _exit(0);
}

static void test_counts_and_leaks_with_threads(void **state) {
  (void)state;
  outcome_t out;
  run_child(threads_child, NULL, &out);
  print_message("child stderr:\n%s", out.err);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 0);
  assert_non_null(strstr(out.err, "Direct leak of 1600 byte(s) in 40 object(s) allocated from:"));
  assert_non_null(strstr(out.err, "in worker_keeps_some+"));
}

/* A report releases the layer's lock before abort(): a SIGABRT handler
 * that allocates does not deadlock. */
static gpa_allocator_t handler_allocator;

static void allocate_in_abort_handler(int sig) {
  (void)sig;
  void *p = gpa_raw_alloc(handler_allocator, 32, 0);
  gpa_raw_free(handler_allocator, p, 32, 0);
  _exit(p != NULL ? 7 : 8);
}

void abort_handler_child(void *arg) {
  (void)arg;
  signal(SIGABRT, allocate_in_abort_handler);
  gpa_t gpa;
  gpa_allocator_t a = debug_instance(&gpa, debug_config());
  handler_allocator = a; /* the handler allocates through this instance too */
  void *p = alloc_site(a);
  first_free_site(a, p);
  gpa_raw_free(a, p, 24, 0);
}

static void test_abort_handler_may_allocate(void **state) {
  (void)state;
  outcome_t out;
  run_child(abort_handler_child, NULL, &out);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 7);
  const char *parts[] = {"double free of 0x"};
  assert_report_has(&out, parts, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_double_free_reports_three_stacks),
    cmocka_unit_test(test_interior_pointer_names_block_and_offset),
    cmocka_unit_test(test_report_gives_the_alignment_asked_for),
    cmocka_unit_test(test_foreign_pointer_is_invalid),
    cmocka_unit_test(test_block_of_another_instance_is_invalid),
    cmocka_unit_test(test_size_mismatch_gives_both_sizes),
    cmocka_unit_test(test_checks_off_keeps_double_free_reports),
    cmocka_unit_test(test_overflow_found_at_free),
    cmocka_unit_test(test_overflow_of_live_block_found_at_deinit),
    cmocka_unit_test(test_write_after_free_found_when_quarantine_drains),
    cmocka_unit_test(test_freed_block_is_filled_and_kept_out_of_use),
    cmocka_unit_test(test_leaks_at_deinit_grouped_largest_first),
    cmocka_unit_test(test_no_report_without_leaks),
    cmocka_unit_test(test_alloc_fill_zeroing_and_alignment),
    cmocka_unit_test(test_blocks_aligned_to_half_a_segment_and_more),
    cmocka_unit_test(test_resize_in_place_keeps_guard),
    cmocka_unit_test(test_memory_limit_refuses_with_enomem),
    cmocka_unit_test(test_continue_on_error_reports_and_goes_on),
    cmocka_unit_test(test_verbose_log_and_statistics),
    cmocka_unit_test(test_statistics_without_stats_count_live_blocks),
    cmocka_unit_test(test_counts_and_leaks_with_threads),
    cmocka_unit_test(test_abort_handler_may_allocate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

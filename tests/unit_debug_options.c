/* unit_debug_options.c: GPA_OPTIONS parsing (every option, the preset,
 * sizes, separators, each kind of error message) and finding the text in
 * the environment, through `environ` and through /proc/self/environ. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "debug_options.h"

extern char **environ;

/* Sizes of the buffers the tests hand to the parser. */
#define TEST_PATH_CAP 64
#define TEST_ERR_CAP 256

/* argv[1] of the re-executed test binary that reads /proc/self/environ. */
#define PROC_CHILD_FLAG "--proc-environ-child"

typedef struct parsed {
  bool ok;
  gpa_debug_config_t cfg;
  char path[TEST_PATH_CAP];
  char err[TEST_ERR_CAP];
} parsed_t;

/* One result at a time, in static storage: cfg.log_path points into it. */
static parsed_t *parse(const char *text) {
  static parsed_t r;
  memset(&r, 0x5a, sizeof r); /* garbage, so a field the parser forgets shows */
  r.ok = debug_options_parse(text, &r.cfg, r.path, sizeof r.path, r.err, sizeof r.err);
  return &r;
}

static void assert_defaults(const gpa_debug_config_t *c) {
  assert_false(c->leaks);
  assert_false(c->show_reachable);
  assert_int_equal(c->frames, 8);
  assert_false(c->exact_stacks);
  assert_true(c->checks);
  assert_false(c->canaries);
  assert_int_equal(c->quarantine, 0);
  assert_false(c->alloc_fill);
  assert_false(c->free_fill);
  assert_int_equal(c->memory_limit, 0);
  assert_false(c->verbose);
  assert_false(c->stats);
  assert_null(c->log_path);
  assert_int_equal(c->leak_exitcode, 23);
  assert_false(c->continue_on_error);
}

static void assert_parse_error(const char *text, const char *message) {
  parsed_t *r = parse(text);
  assert_false(r->ok);
  assert_string_equal(r->err, message);
  assert_defaults(&r->cfg);
}

static void test_defaults(void **state) {
  (void)state;
  parsed_t *r = parse("");
  assert_true(r->ok);
  assert_defaults(&r->cfg);
  r = parse(NULL);
  assert_true(r->ok);
  assert_defaults(&r->cfg);
}

static void test_each_boolean_option(void **state) {
  (void)state;
  parsed_t *r = parse("leaks=1:reachable=1:checks=0:canaries=1:alloc_fill=1:free_fill=1:verbose=1:stats=1");
  assert_true(r->ok);
  assert_true(r->cfg.leaks);
  assert_true(r->cfg.show_reachable);
  assert_false(r->cfg.checks);
  assert_true(r->cfg.canaries);
  assert_true(r->cfg.alloc_fill);
  assert_true(r->cfg.free_fill);
  assert_true(r->cfg.verbose);
  assert_true(r->cfg.stats);
  /* Untouched fields keep their defaults. */
  assert_int_equal(r->cfg.frames, 8);
  assert_int_equal(r->cfg.leak_exitcode, 23);
}

static void test_boolean_words(void **state) {
  (void)state;
  const char *on[] = { "leaks=1", "leaks=yes", "leaks=true", "leaks=on", "leaks=YES", "leaks=On", "leaks" };
  const char *off[] = { "leaks=1:leaks=0", "leaks:leaks=no", "leaks:leaks=false", "leaks:leaks=off",
                        "leaks:leaks=FALSE" };
  for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
    parsed_t *r = parse(on[i]);
    assert_true(r->ok);
    assert_true(r->cfg.leaks);
  }
  for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
    parsed_t *r = parse(off[i]);
    assert_true(r->ok);
    assert_false(r->cfg.leaks);
  }
}

static void test_bare_booleans(void **state) {
  (void)state;
  parsed_t *r = parse("stats:verbose:checks");
  assert_true(r->ok);
  assert_true(r->cfg.stats);
  assert_true(r->cfg.verbose);
  assert_true(r->cfg.checks);
  assert_false(r->cfg.leaks);
}

static void test_numbers(void **state) {
  (void)state;
  parsed_t *r = parse("frames=0:exitcode=0");
  assert_true(r->ok);
  assert_int_equal(r->cfg.frames, 0);
  assert_int_equal(r->cfg.leak_exitcode, 0);
  r = parse("frames=64:exitcode=255");
  assert_true(r->ok);
  assert_int_equal(r->cfg.frames, 64);
  assert_int_equal(r->cfg.leak_exitcode, 255);
  r = parse("frames=16");
  assert_true(r->ok);
  assert_int_equal(r->cfg.frames, 16);
}

static void test_choices(void **state) {
  (void)state;
  parsed_t *r = parse("stacks=exact:on_error=continue");
  assert_true(r->ok);
  assert_true(r->cfg.exact_stacks);
  assert_true(r->cfg.continue_on_error);
  r = parse("stacks=exact:on_error=continue:stacks=fast:on_error=abort");
  assert_true(r->ok);
  assert_false(r->cfg.exact_stacks);
  assert_false(r->cfg.continue_on_error);
}

static void test_sizes(void **state) {
  (void)state;
  struct {
    const char *text;
    size_t want;
  } cases[] = {
    { "quarantine=0", 0 },
    { "quarantine=12345", 12345 },
    { "quarantine=4k", (size_t)4 << 10 },
    { "quarantine=4K", (size_t)4 << 10 },
    { "quarantine=16m", (size_t)16 << 20 },
    { "quarantine=16M", (size_t)16 << 20 },
    { "quarantine=2g", (size_t)2 << 30 },
    { "quarantine=3G", (size_t)3 << 30 },
    { "quarantine=18446744073709551615", SIZE_MAX },
    { "quarantine=17179869183g", (size_t)17179869183u << 30 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    parsed_t *r = parse(cases[i].text);
    assert_true(r->ok);
    assert_int_equal(r->cfg.quarantine, cases[i].want);
  }
  parsed_t *r = parse("limit=512m");
  assert_true(r->ok);
  assert_int_equal(r->cfg.memory_limit, (size_t)512 << 20);
  assert_int_equal(r->cfg.quarantine, 0);
}

static void test_size_errors(void **state) {
  (void)state;
  const char *malformed = ": expected a size: a number with an optional k, m or g suffix";
  const char *bad[] = { "12x", "k", "1.5m", "-1", "4kb", "0x10", "+5" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[64], want[160];
    snprintf(text, sizeof text, "limit=%s", bad[i]);
    snprintf(want, sizeof want, "gpa: GPA_OPTIONS: limit=%s%s", bad[i], malformed);
    assert_parse_error(text, want);
  }
  assert_parse_error("quarantine=18446744073709551616",
                     "gpa: GPA_OPTIONS: quarantine=18446744073709551616: too large for a size");
  assert_parse_error("quarantine=17179869184g",
                     "gpa: GPA_OPTIONS: quarantine=17179869184g: too large for a size");
  assert_parse_error("limit=99999999999999999999999k",
                     "gpa: GPA_OPTIONS: limit=99999999999999999999999k: too large for a size");
}

static void test_preset(void **state) {
  (void)state;
  parsed_t *r = parse("checks=0:debug=1");
  assert_true(r->ok);
  assert_true(r->cfg.leaks);
  assert_true(r->cfg.checks); /* the preset, standing later, wins */
  assert_true(r->cfg.canaries);
  assert_true(r->cfg.free_fill);
  assert_int_equal(r->cfg.quarantine, (size_t)16 << 20);
  assert_false(r->cfg.alloc_fill);
  assert_false(r->cfg.stats);

  r = parse("debug:quarantine=1m:leaks=0");
  assert_true(r->ok);
  assert_int_equal(r->cfg.quarantine, (size_t)1 << 20);
  assert_false(r->cfg.leaks);
  assert_true(r->cfg.canaries);

  /* debug=0 puts what the preset sets back to the defaults, nothing else. */
  r = parse("debug=1:stats=1:debug=0");
  assert_true(r->ok);
  assert_false(r->cfg.leaks);
  assert_true(r->cfg.checks);
  assert_false(r->cfg.canaries);
  assert_false(r->cfg.free_fill);
  assert_int_equal(r->cfg.quarantine, 0);
  assert_true(r->cfg.stats);
}

static void test_separators_and_empty_items(void **state) {
  (void)state;
  const char *texts[] = { "leaks=1:stats=1", "leaks=1,stats=1", "leaks=1::stats=1", ":leaks=1,,stats=1:",
                          " leaks = 1 , stats=1 ", "leaks=1:,:stats=1" };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    parsed_t *r = parse(texts[i]);
    assert_true(r->ok);
    assert_true(r->cfg.leaks);
    assert_true(r->cfg.stats);
    assert_false(r->cfg.verbose);
  }
  parsed_t *r = parse(":,::");
  assert_true(r->ok);
  assert_defaults(&r->cfg);
}

static void test_later_options_win(void **state) {
  (void)state;
  parsed_t *r = parse("frames=4:frames=32:leaks=1:leaks=0");
  assert_true(r->ok);
  assert_int_equal(r->cfg.frames, 32);
  assert_false(r->cfg.leaks);
}

static void test_log_path_copied(void **state) {
  (void)state;
  char text[] = "log=/tmp/gpa.log:stats=1";
  parsed_t *r = parse(text);
  assert_true(r->ok);
  assert_ptr_equal(r->cfg.log_path, r->path);
  assert_string_equal(r->path, "/tmp/gpa.log");
  /* A copy: changing the text afterwards leaves the path alone. */
  memset(text, 'x', sizeof text - 1);
  assert_string_equal(r->path, "/tmp/gpa.log");
  assert_true(r->cfg.stats);

  r = parse("log=first:log=second");
  assert_true(r->ok);
  assert_string_equal(r->cfg.log_path, "second");
}

static void test_path_length_limit(void **state) {
  (void)state;
  char text[TEST_PATH_CAP + 16];
  /* TEST_PATH_CAP - 1 characters and the NUL fit exactly. */
  memcpy(text, "log=", 4);
  memset(text + 4, 'p', TEST_PATH_CAP - 1);
  text[4 + TEST_PATH_CAP - 1] = '\0';
  parsed_t *r = parse(text);
  assert_true(r->ok);
  assert_int_equal(strlen(r->cfg.log_path), TEST_PATH_CAP - 1);

  memset(text + 4, 'p', TEST_PATH_CAP);
  text[4 + TEST_PATH_CAP] = '\0';
  assert_parse_error(text, "gpa: GPA_OPTIONS: log: path too long (at most 63 bytes)");

  /* No buffer at all: any path is too long. */
  gpa_debug_config_t cfg;
  char err[TEST_ERR_CAP];
  assert_false(debug_options_parse("log=x", &cfg, NULL, 0, err, sizeof err));
  assert_string_equal(err, "gpa: GPA_OPTIONS: log: path too long (at most 0 bytes)");
}

static void test_unknown_option_messages(void **state) {
  (void)state;
  assert_parse_error("leak=1", "gpa: GPA_OPTIONS: unknown option 'leak' (did you mean 'leaks'?)");
  assert_parse_error("stats=1:frame=3", "gpa: GPA_OPTIONS: unknown option 'frame' (did you mean 'frames'?)");
  assert_parse_error("canary", "gpa: GPA_OPTIONS: unknown option 'canary' (did you mean 'canaries'?)");
  assert_parse_error("laeks", "gpa: GPA_OPTIONS: unknown option 'laeks' (did you mean 'leaks'?)");
  assert_parse_error("STATS=1", "gpa: GPA_OPTIONS: unknown option 'STATS' (did you mean 'stats'?)");
  assert_parse_error("exit_code=3",
                     "gpa: GPA_OPTIONS: unknown option 'exit_code' (did you mean 'exitcode'?)");
  /* Nothing close: no suggestion. */
  assert_parse_error("zzz=1", "gpa: GPA_OPTIONS: unknown option 'zzz'");
  assert_parse_error("memory_limit=1m", "gpa: GPA_OPTIONS: unknown option 'memory_limit'");
  assert_parse_error("=1", "gpa: GPA_OPTIONS: unknown option ''");
}

static void test_value_messages(void **state) {
  (void)state;
  assert_parse_error("frames=abc", "gpa: GPA_OPTIONS: frames=abc: expected a number from 0 to 64");
  assert_parse_error("frames=65", "gpa: GPA_OPTIONS: frames=65: expected a number from 0 to 64");
  assert_parse_error("frames=-1", "gpa: GPA_OPTIONS: frames=-1: expected a number from 0 to 64");
  assert_parse_error("frames=99999999999999999999999",
                     "gpa: GPA_OPTIONS: frames=99999999999999999999999: expected a number from 0 to 64");
  assert_parse_error("exitcode=256", "gpa: GPA_OPTIONS: exitcode=256: expected a number from 0 to 255");
  assert_parse_error("leaks=maybe",
                     "gpa: GPA_OPTIONS: leaks=maybe: expected 0 or 1 (or yes/no, true/false, on/off)");
  assert_parse_error("debug=2", "gpa: GPA_OPTIONS: debug=2: expected 0 or 1 (or yes/no, true/false, on/off)");
  assert_parse_error("stacks=slow", "gpa: GPA_OPTIONS: stacks=slow: expected fast or exact");
  assert_parse_error("on_error=ignore", "gpa: GPA_OPTIONS: on_error=ignore: expected abort or continue");
}

static void test_missing_value_messages(void **state) {
  (void)state;
  assert_parse_error("log", "gpa: GPA_OPTIONS: log: needs a value (log=PATH)");
  assert_parse_error("log=", "gpa: GPA_OPTIONS: log: needs a value (log=PATH)");
  assert_parse_error("stats:frames", "gpa: GPA_OPTIONS: frames: needs a value (frames=N)");
  assert_parse_error("quarantine=", "gpa: GPA_OPTIONS: quarantine: needs a value (quarantine=SIZE)");
  assert_parse_error("stacks", "gpa: GPA_OPTIONS: stacks: needs a value (stacks=fast|exact)");
  assert_parse_error("leaks=", "gpa: GPA_OPTIONS: leaks: needs a value (leaks=0|1)");
}

static void test_message_shows_control_bytes_and_long_text_safely(void **state) {
  (void)state;
  assert_parse_error("frames=1\t2x", "gpa: GPA_OPTIONS: frames=1?2x: expected a number from 0 to 64");
  char text[300];
  memcpy(text, "frames=", 7);
  memset(text + 7, '9', 200);
  text[207] = '\0';
  parsed_t *r = parse(text);
  assert_false(r->ok);
  assert_non_null(strstr(r->err, "...: expected a number from 0 to 64"));
  assert_null(strchr(r->err, '\n'));
}

static void test_small_error_buffer_is_cut_not_overrun(void **state) {
  (void)state;
  char buf[32];
  memset(buf, '#', sizeof buf);
  gpa_debug_config_t cfg;
  char path[8];
  /* Only the first 10 bytes are the parser's; the rest must stay '#'. */
  assert_false(debug_options_parse("leak=1", &cfg, path, sizeof path, buf, 10));
  assert_string_equal(buf, "gpa: GPA_");
  for (size_t i = 10; i < sizeof buf; i++) assert_int_equal(buf[i], '#');
  /* No error buffer at all is allowed too. */
  assert_false(debug_options_parse("leak=1", &cfg, path, sizeof path, NULL, 0));
  assert_true(debug_options_parse("leaks=1", &cfg, path, sizeof path, NULL, 0));
  assert_true(cfg.leaks);
}

static void test_reads_only_the_text(void **state) {
  (void)state;
  /* A heap copy of exactly the text's size, so a read past its NUL shows
   * under AddressSanitizer or Valgrind. */
  char *text = malloc(6);
  assert_non_null(text);
  memcpy(text, "leaks", 6);
  parsed_t *r = parse(text);
  free(text);
  assert_true(r->ok);
  assert_true(r->cfg.leaks);
}

static void test_text_from_environ(void **state) {
  (void)state;
  assert_int_equal(setenv("GPA_OPTIONS_NOT_THIS", "verbose=1", 1), 0);
  assert_int_equal(unsetenv("GPA_OPTIONS"), 0);
  assert_null(debug_options_text());
  assert_int_equal(setenv("GPA_OPTIONS", "leaks=1:frames=16", 1), 0);
  const char *text = debug_options_text();
  assert_non_null(text);
  assert_string_equal(text, "leaks=1:frames=16");
  assert_int_equal(setenv("GPA_OPTIONS", "", 1), 0);
  text = debug_options_text();
  assert_non_null(text);
  assert_string_equal(text, "");
  unsetenv("GPA_OPTIONS");
  unsetenv("GPA_OPTIONS_NOT_THIS");
}

/* Runs this binary again with `envp` as its whole environment; the child
 * (see main) clears `environ`, so debug_options_text reads
 * /proc/self/environ, and compares with `want` (NULL: expects no value). */
static int run_proc_child(char **envp, const char *want) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char *argv[] = { (char *)"unit_debug_options", (char *)PROC_CHILD_FLAG, (char *)(want ? want : ""),
                     (char *)(want ? "value" : "none"), NULL };
    execve("/proc/self/exe", argv, envp);
    _exit(99);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

static int proc_child_main(char **argv) {
  char **saved = environ;
  environ = NULL;
  const char *text = debug_options_text();
  environ = saved;
  if (strcmp(argv[3], "none") == 0) return text == NULL ? 0 : 1;
  if (text == NULL) return 2;
  if (strcmp(text, argv[2]) != 0) {
    fprintf(stderr, "got '%.60s' (%zu bytes), wanted '%.60s' (%zu bytes)\n", text, strlen(text), argv[2],
            strlen(argv[2]));
    return 3;
  }
  return 0;
}

static void test_text_from_proc_environ(void **state) {
  (void)state;
  char *plain[] = { (char *)"A=1", (char *)"GPA_OPTIONS=leaks=1:stats=1", (char *)"B=2", NULL };
  assert_int_equal(run_proc_child(plain, "leaks=1:stats=1"), 0);

  /* Look-alike names before it must not match; an entry far into the
   * file (past any small read window) must still be found. */
  size_t filler_len = 3000;
  char *filler = malloc(filler_len + 3);
  assert_non_null(filler);
  memcpy(filler, "F=", 2);
  memset(filler + 2, 'f', filler_len);
  filler[filler_len + 2] = '\0';
  char *tricky[] = { (char *)"XGPA_OPTIONS=verbose=1", (char *)"GPA_OPTIONSX=verbose=1", filler,
                     (char *)"GPA_OPTIONS=frames=3,log=/tmp/x", NULL };
  assert_int_equal(run_proc_child(tricky, "frames=3,log=/tmp/x"), 0);

  char *none[] = { (char *)"A=1", (char *)"GPA_OPTION=leaks", filler, NULL };
  assert_int_equal(run_proc_child(none, NULL), 0);
  free(filler);

  /* A value longer than the library keeps (8 KiB) is cut at the last
   * whole item, never in the middle of one. */
  size_t items = 2000;
  char *huge = malloc(12 + items * 8 + 1);
  assert_non_null(huge);
  strcpy(huge, "GPA_OPTIONS=");
  for (size_t i = 0; i < items; i++) strcat(huge, "stats=1:");
  char *long_env[] = { huge, NULL };
  /* 8191 bytes kept at most, whole "stats=1:" items of 8 bytes: 1023 of them. */
  char *want = malloc(1023 * 8 + 1);
  assert_non_null(want);
  want[0] = '\0';
  for (size_t i = 0; i < 1023; i++) strcat(want, "stats=1:");
  assert_int_equal(run_proc_child(long_env, want), 0);
  free(want);
  free(huge);
}

static void test_help_lists_every_option(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  debug_options_print_help(fds[1]);
  close(fds[1]);
  static char out[16384];
  size_t len = 0;
  ssize_t got;
  while ((got = read(fds[0], out + len, sizeof out - 1 - len)) > 0) len += (size_t)got;
  close(fds[0]);
  out[len] = '\0';
  const char *names[] = { "leaks=", "reachable=", "frames=", "stacks=", "checks=", "canaries=",
                          "quarantine=", "alloc_fill=", "free_fill=", "limit=", "verbose=", "stats=",
                          "log=", "exitcode=", "on_error=", "debug=" };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char line_start[32];
    snprintf(line_start, sizeof line_start, "\n  %s", names[i]);
    assert_non_null(strstr(out, line_start));
  }
  /* Defaults come from the same place the parser's do. */
  assert_non_null(strstr(out, "\n  frames=N                  8 "));
  assert_non_null(strstr(out, "\n  exitcode=N                23 "));
  assert_non_null(strstr(out, "\n  log=PATH                  stderr "));
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], PROC_CHILD_FLAG) == 0) return proc_child_main(argv);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_defaults),
    cmocka_unit_test(test_each_boolean_option),
    cmocka_unit_test(test_boolean_words),
    cmocka_unit_test(test_bare_booleans),
    cmocka_unit_test(test_numbers),
    cmocka_unit_test(test_choices),
    cmocka_unit_test(test_sizes),
    cmocka_unit_test(test_size_errors),
    cmocka_unit_test(test_preset),
    cmocka_unit_test(test_separators_and_empty_items),
    cmocka_unit_test(test_later_options_win),
    cmocka_unit_test(test_log_path_copied),
    cmocka_unit_test(test_path_length_limit),
    cmocka_unit_test(test_unknown_option_messages),
    cmocka_unit_test(test_value_messages),
    cmocka_unit_test(test_missing_value_messages),
    cmocka_unit_test(test_message_shows_control_bytes_and_long_text_safely),
    cmocka_unit_test(test_small_error_buffer_is_cut_not_overrun),
    cmocka_unit_test(test_reads_only_the_text),
    cmocka_unit_test(test_text_from_environ),
    cmocka_unit_test(test_text_from_proc_environ),
    cmocka_unit_test(test_help_lists_every_option),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

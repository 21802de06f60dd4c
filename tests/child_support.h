/*
 * child_support.h: running a misuse in a fork()ed child and checking its
 * report, for the cmocka suites.  Include after <cmocka.h>.
 */
#ifndef GPA_CHILD_SUPPORT_H
#define GPA_CHILD_SUPPORT_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* What a child did: how it ended, and what it wrote to stderr. */
typedef struct {
  int status;
  char err[4096];
  size_t len;
} outcome_t;

typedef void (*action_fn)(void *arg);

/* Runs `action(arg)` in a child whose stderr is a pipe back to us. */
static void run_child(action_fn action, void *arg, outcome_t *out) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    /* The abort is expected: no core file.  cmocka catches SIGSEGV and
     * friends to report a failed test; the child must die of them instead,
     * and of SIGABRT by default. */
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    const int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGABRT);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    alarm(20); /* a hang is a failure (dies of SIGALRM), not a stuck suite */
    if (dup2(fds[1], 2) < 0) _exit(120);
    close(fds[1]);
    action(arg);
    _exit(0); /* the misuse went unnoticed */
  }
  close(fds[1]);
  out->len = 0;
  for (;;) {
    ssize_t n = read(fds[0], out->err + out->len, sizeof out->err - 1 - out->len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out->len += (size_t)n;
    if (out->len == sizeof out->err - 1) break;
  }
  out->err[out->len] = '\0';
  close(fds[0]);
  pid_t waited;
  do {
    waited = waitpid(pid, &out->status, 0);
  } while (waited < 0 && errno == EINTR);
  assert_int_equal(waited, pid);
}

static int is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The child died of SIGABRT after one line "gpa: ..." naming `p` as %p does. */
__attribute__((unused)) static void assert_reported(const outcome_t *out, const void *p) {
  char want[32];
  snprintf(want, sizeof want, "%p", p);
  print_message("child stderr: %s", out->err);
  assert_true(WIFSIGNALED(out->status));
  assert_int_equal(WTERMSIG(out->status), SIGABRT);
  assert_true(out->len > 0);
  assert_int_equal(strlen(out->err), out->len);
  assert_int_equal(strncmp(out->err, "gpa: ", 5), 0);
  /* One line: a single newline, at the end. */
  assert_true(out->err[out->len - 1] == '\n');
  assert_ptr_equal(strchr(out->err, '\n'), out->err + out->len - 1);
  /* The pointer in lowercase hex, as a whole number (not a prefix of one). */
  assert_int_equal(strncmp(want, "0x", 2), 0);
  const char *at = strstr(out->err, want);
  assert_non_null(at);
  assert_false(is_hex_digit(at[strlen(want)]));
  assert_true(at == out->err || !is_hex_digit(at[-1]));
}

#endif /* GPA_CHILD_SUPPORT_H */

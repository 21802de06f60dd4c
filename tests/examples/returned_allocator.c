/*
 * returned_allocator.c: why a function must not return the allocator of a
 * gpa_t that lives in its own frame.  The state dies with the frame, so the
 * value the caller gets points at dead stack memory; the library notices on
 * the first call and aborts with a report instead of handing out blocks
 * from garbage.
 *
 * The invalid program runs in a forked child; the parent checks that the
 * child died of SIGABRT with the expected report on stderr.
 *
 * expected stdout: "caught: gpa: allocator used after its state went out of scope"
 */
#include <gpa.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Invalid: `gpa` is gone once this returns.  (noinline: a compiler that
 * merged this frame into the caller's would keep the state alive and hide
 * the mistake this program is about.) */
__attribute__((noinline)) static gpa_allocator_t broken_get_allocator(void) {
  gpa_t gpa;
  if (gpa_init(&gpa, NULL) != 0) _exit(2);
  return gpa_allocator(&gpa);
}

static void invalid_program(void) {
  gpa_allocator_t allocator = broken_get_allocator();
  char *bytes = gpa_alloc(allocator, char, 64); /* must not get here */
  if (bytes != NULL) bytes[0] = 'x';
  _exit(0);
}

int main(void) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return 1;
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    dup2(pipe_fds[1], 2);
    close(pipe_fds[0]);
    invalid_program();
  }
  close(pipe_fds[1]);
  char report[512];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof report - 1 && (n = read(pipe_fds[0], report + len, sizeof report - 1 - len)) > 0) len += (size_t)n;
  report[len] = '\0';
  int status;
  if (waitpid(pid, &status, 0) != pid) return 1;
  const char *expected = "gpa: allocator used after its state went out of scope";
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT || strstr(report, expected) != report) {
    fprintf(stderr, "child status %d, stderr: %s\n", status, report);
    return 1;
  }
  printf("caught: %s\n", expected);
  return 0;
}

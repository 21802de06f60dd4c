/* unit_debug_threads.c: holding the other threads still for the exit scan:
 * every thread that can take the signal answers and stops making progress
 * until resumed; one that blocks the signal is waited for only so long,
 * and goes on; the registers a stopped thread holds land in memory that a
 * scan of the process's mappings reads; the program's own handler for the
 * signal comes back afterwards.  An ended thread's stack is named as such
 * until a thread runs on it again. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "debug_stack.h"
#include "debug_threads.h"

#define SPINNERS 3
/* debug_threads.c's signal. */
#define STOP_SIGNAL (SIGRTMAX - 3)

atomic_bool quit; /* read by hold_marker too */

typedef struct spinner {
  pthread_t thread;
  bool block_signal;
  atomic_ulong laps;
  atomic_bool started;
} spinner_t;

static void *spin(void *arg) {
  spinner_t *s = arg;
  if (s->block_signal) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, STOP_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
  }
  atomic_store(&s->started, true);
  while (!atomic_load(&quit)) atomic_fetch_add(&s->laps, 1);
  return NULL;
}

static void sleep_ms(long ms) {
  struct timespec t = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
  nanosleep(&t, NULL);
}

static void start(spinner_t *spinners, size_t n) {
  atomic_store(&quit, false);
  for (size_t i = 0; i < n; i++) pthread_create(&spinners[i].thread, NULL, spin, &spinners[i]);
  for (size_t i = 0; i < n; i++)
    while (!atomic_load(&spinners[i].started)) sched_yield();
}

static void finish(spinner_t *spinners, size_t n) {
  atomic_store(&quit, true);
  for (size_t i = 0; i < n; i++) pthread_join(spinners[i].thread, NULL);
}

static void test_alone_nothing_to_stop(void **state) {
  (void)state;
  assert_int_equal(debug_threads_stop(), 0);
  debug_threads_resume();
}

static void test_threads_stop_and_resume(void **state) {
  (void)state;
  spinner_t spinners[SPINNERS + 1];
  memset(spinners, 0, sizeof spinners);
  spinners[SPINNERS].block_signal = true; /* waited for, then left alone */
  start(spinners, SPINNERS + 1);
  time_t before = time(NULL);
  assert_int_equal(debug_threads_stop(), SPINNERS);
  unsigned long laps[SPINNERS + 1];
  for (size_t i = 0; i <= SPINNERS; i++) laps[i] = atomic_load(&spinners[i].laps);
  sleep_ms(50);
  for (size_t i = 0; i < SPINNERS; i++) assert_int_equal(atomic_load(&spinners[i].laps), laps[i]);
  assert_true(atomic_load(&spinners[SPINNERS].laps) > laps[SPINNERS]);
  debug_threads_resume();
  assert_true(time(NULL) - before < 5);
  sleep_ms(50);
  for (size_t i = 0; i < SPINNERS; i++) assert_true(atomic_load(&spinners[i].laps) > laps[i]);
  finish(spinners, SPINNERS + 1);
}

/* A value only a stopped thread's register holds shows up in a private
 * writable mapping, where the scan looks: in the signal frame on its stack
 * and in the copy debug_threads_stop makes. */
#define MARKER 0x5eed1234abcd5678ull
atomic_bool marker_ready;
void *hold_marker(void *arg);
__asm__(".pushsection .text\n"
        ".globl hold_marker\n"
        ".type hold_marker, @function\n"
        "hold_marker:\n"
        "  push %r14\n"
        "  movabs $0x5eed1234abcd5677, %r14\n" /* MARKER - 1: no copy in memory */
        "  add $1, %r14\n"
        "  movb $1, marker_ready(%rip)\n"
        "1:\n"
        "  movzbl quit(%rip), %eax\n"
        "  test %eax, %eax\n"
        "  je 1b\n"
        "  pop %r14\n"
        "  xor %eax, %eax\n"
        "  ret\n"
        ".size hold_marker, .-hold_marker\n"
        ".popsection\n");

/* Count the words equal to MARKER in every rw-p mapping. */
static size_t markers_in_memory(void) {
  FILE *maps = fopen("/proc/self/maps", "r");
  assert_non_null(maps);
  char line[512];
  size_t found = 0;
  while (fgets(line, sizeof line, maps) != NULL) {
    unsigned long lo, hi;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3 || strcmp(perms, "rw-p") != 0) continue;
    if (strstr(line, "[vvar") != NULL) continue;
    for (const volatile uint64_t *w = (const uint64_t *)lo; (uintptr_t)w < hi; w++)
      if (*w == MARKER) found++;
  }
  fclose(maps);
  return found;
}

static void test_registers_land_in_memory(void **state) {
  (void)state;
  atomic_store(&quit, false);
  atomic_store(&marker_ready, false);
  pthread_t t;
  pthread_create(&t, NULL, hold_marker, NULL);
  while (!atomic_load(&marker_ready)) sched_yield();
  assert_int_equal(markers_in_memory(), 0);
  assert_int_equal(debug_threads_stop(), 1);
  assert_true(markers_in_memory() >= 1);
  debug_threads_resume();
  atomic_store(&quit, true);
  pthread_join(t, NULL);
}

static volatile sig_atomic_t own_handler_ran;
static void own_handler(int sig) {
  (void)sig;
  own_handler_ran = 1;
}

static void test_program_handler_comes_back(void **state) {
  (void)state;
  struct sigaction mine = {0}, now;
  mine.sa_handler = own_handler;
  sigaction(STOP_SIGNAL, &mine, NULL);
  spinner_t spinners[1];
  memset(spinners, 0, sizeof spinners);
  start(spinners, 1);
  assert_int_equal(debug_threads_stop(), 1);
  debug_threads_resume();
  finish(spinners, 1);
  sigaction(STOP_SIGNAL, NULL, &now);
  assert_ptr_equal(now.sa_handler, own_handler);
  raise(STOP_SIGNAL);
  assert_int_equal(own_handler_ran, 1);
}

/* ---- ended threads' stacks ---------------------------------------------------- */

/* Threads run one after another on this one stack of the test's, so that
 * each starts where the one before ended. */
#define SHARED_STACK_BYTES ((size_t)256 << 10)
static void *shared_stack;
static uintptr_t noted_lo, noted_hi;

static void *note_and_end(void *arg) {
  (void)arg;
  debug_threads_started();
  if (!debug_stack_thread_bounds(false, &noted_lo, &noted_hi)) noted_lo = noted_hi = 0;
  debug_threads_ended();
  return NULL;
}

static void *only_start(void *arg) {
  (void)arg;
  debug_threads_started();
  return NULL;
}

static void start_on_shared_stack(pthread_t *t, void *(*fn)(void *), void *arg) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, shared_stack, SHARED_STACK_BYTES);
  assert_int_equal(pthread_create(t, &attr, fn, arg), 0);
  pthread_attr_destroy(&attr);
}

static void test_ended_stack_until_a_thread_runs_on_it(void **state) {
  (void)state;
  shared_stack = mmap(NULL, SHARED_STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(shared_stack != MAP_FAILED);
  pthread_t t;
  start_on_shared_stack(&t, note_and_end, NULL);
  pthread_join(t, NULL);
  uintptr_t stack_lo = (uintptr_t)shared_stack, stack_hi = stack_lo + SHARED_STACK_BYTES;
  assert_true(noted_lo >= stack_lo && noted_hi <= stack_hi && noted_lo < noted_hi);

  /* Named by its start only, and up to the thread's descriptor at the top. */
  uintptr_t end = 0;
  assert_true(debug_threads_ended_stack(noted_lo, &end));
  assert_true(end > noted_lo && end < noted_hi);
  assert_false(debug_threads_ended_stack(noted_lo + sizeof(uintptr_t), &end));

  /* A thread running on it, that answers the stop, makes it live again. */
  spinner_t spinner;
  memset(&spinner, 0, sizeof spinner);
  atomic_store(&quit, false);
  start_on_shared_stack(&spinner.thread, spin, &spinner);
  while (!atomic_load(&spinner.started)) sched_yield();
  assert_int_equal(debug_threads_stop(), 1);
  assert_false(debug_threads_ended_stack(noted_lo, &end));
  debug_threads_resume();
  finish(&spinner, 1);
  /* Still named once that thread is gone: it never called into the layer. */
  assert_true(debug_threads_ended_stack(noted_lo, &end));

  /* A thread of the layer's that starts on it forgets it. */
  start_on_shared_stack(&t, only_start, NULL);
  pthread_join(t, NULL);
  assert_false(debug_threads_ended_stack(noted_lo, &end));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_alone_nothing_to_stop),
    cmocka_unit_test(test_threads_stop_and_resume),
    cmocka_unit_test(test_registers_land_in_memory),
    cmocka_unit_test(test_program_handler_comes_back),
    cmocka_unit_test(test_ended_stack_until_a_thread_runs_on_it),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

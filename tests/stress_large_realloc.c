/* stress_large_realloc.c: large blocks growing by moving their pages while
 * other threads map and unmap small segments, every address chosen by the
 * kernel.  A vacated range is then often reused at once for another
 * thread's segment; every live block must stay registered as ours (a lost
 * entry makes a valid free abort with "not allocated by gpa").
 *
 * Runs for STRESS_SECONDS (default 3) seconds of wall time; the assertion
 * is about the blocks, not the time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <cmocka.h>

#include "internal.h"
#include "os.h"

#define MiB ((size_t)1 << 20)
#define DEFAULT_SECONDS 3
#define REALLOC_THREADS 2
#define SMALL_THREADS 2
/* Enough 48 KiB blocks to fill several segments: more than the instance
 * keeps cached (GPA_SEGMENT_CACHE_MAX), so each round unmaps and maps some. */
#define SMALL_BLOCKS 1024
#define SMALL_SIZE ((size_t)48 << 10)

static _Atomic(bool) stop;
static _Atomic(size_t) lost_entries;
static _Atomic(size_t) moves;

static bool registered(const void *p) { return segmap_contains(segment_of(p)); }

static void *realloc_thread(void *arg) {
  (void)arg;
  /* Growth steps far past what mremap can extend in place: below each
   * kernel-placed mapping there is usually another. */
  static const size_t sizes[] = {2 * MiB, 3 * MiB, 5 * MiB, 9 * MiB, 17 * MiB, 33 * MiB};
  while (!atomic_load(&stop)) {
    uint8_t *p = malloc(sizes[0]);
    if (p == NULL) continue;
    p[0] = 0x5a;
    for (size_t i = 1; i < sizeof sizes / sizeof sizes[0]; i++) {
      uint8_t *q = realloc(p, sizes[i]);
      if (q == NULL) break;
      if (q != p) atomic_fetch_add(&moves, 1);
      p = q;
      if (p[0] != 0x5a || !registered(p)) {
        atomic_fetch_add(&lost_entries, 1);
        p = NULL; /* freeing it would abort: leave it */
        break;
      }
    }
    free(p);
  }
  return NULL;
}

static void *small_thread(void *arg) {
  (void)arg;
  static __thread void *blocks[SMALL_BLOCKS];
  while (!atomic_load(&stop)) {
    for (size_t i = 0; i < SMALL_BLOCKS; i++) {
      blocks[i] = malloc(SMALL_SIZE);
      if (blocks[i] != NULL) *(volatile uint8_t *)blocks[i] = 1;
    }
    for (size_t i = 0; i < SMALL_BLOCKS; i++) {
      if (blocks[i] == NULL) continue;
      if (!registered(blocks[i])) {
        atomic_fetch_add(&lost_entries, 1);
        continue; /* freeing it would abort: leave it */
      }
      free(blocks[i]);
    }
  }
  return NULL;
}

static void test_large_reallocs_beside_segment_churn(void **state) {
  (void)state;
  const char *env = getenv("STRESS_SECONDS");
  unsigned seconds = env != NULL ? (unsigned)strtoul(env, NULL, 10) : DEFAULT_SECONDS;
  os_disable_hints(true); /* the kernel places every mapping */
  pthread_t threads[REALLOC_THREADS + SMALL_THREADS];
  for (size_t i = 0; i < REALLOC_THREADS + SMALL_THREADS; i++)
    assert_int_equal(pthread_create(&threads[i], NULL, i < REALLOC_THREADS ? realloc_thread : small_thread, NULL), 0);
  struct timespec pause = {.tv_sec = seconds};
  nanosleep(&pause, NULL);
  atomic_store(&stop, true);
  for (size_t i = 0; i < REALLOC_THREADS + SMALL_THREADS; i++) pthread_join(threads[i], NULL);
  os_disable_hints(false);
  fprintf(stderr, "%zu large moves in %u s, %zu blocks lost their segment's entry\n", atomic_load(&moves), seconds,
          atomic_load(&lost_entries));
  assert_true(atomic_load(&moves) > 0); /* the race was exercised at all */
  assert_int_equal(atomic_load(&lost_entries), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_large_reallocs_beside_segment_churn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

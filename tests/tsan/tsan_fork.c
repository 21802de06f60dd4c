/*
 * tsan_fork.c: fork() from a process whose other threads allocate and free
 * (ThreadSanitizer needs die_after_fork=0 to let such a child run).
 *
 * Threads churn through the process instance (gpa_core_*), a thread-safe
 * gpa_t and a gpa_t with the debug layer, handing blocks to each other,
 * while the main thread forks.  Each child (one thread: the forking one)
 * allocates and frees through all three, checks the debug instance's live
 * count moves by exactly its own blocks (a walk that must not wait for
 * threads the child does not have), and exits; the parent checks every
 * child's exit status.
 */
#include <gpa.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "tsan_support.h"

#define FORKS 16
#define CHILD_BLOCKS 200
#define CHURN_BLOCKS 4000
#define KiB ((size_t)1 << 10)
/* Large enough to be a large block (above 256 KiB). */
#define LARGE_SIZE (300 * KiB)

static gpa_t plain, debugged;
static atomic_bool forking_done;

/* ---- the parent's threads ---------------------------------------------------- */

typedef struct churn_arg {
  tsan_queue_t *queue;
  uint64_t seed; /* 0: consumer */
} churn_arg_t;

static void *churn_thread(void *p) {
  churn_arg_t *arg = p;
  gpa_allocator_t ap = gpa_allocator(&plain), ad = gpa_allocator(&debugged);
  if (arg->seed == 0) {
    for (uint8_t *b; (b = tsan_queue_pop(arg->queue)) != NULL;) {
      tsan_block_check(b);
      size_t size = ((tsan_block_t *)b)->size;
      /* The producer's choice of allocator: by the seed's low bits. */
      switch (((tsan_block_t *)b)->seed % 3) {
        case 0: gpa_core_free(b); break;
        case 1: gpa_free(ap, b, size); break;
        default: gpa_free(ad, b, size); break;
      }
    }
    return NULL;
  }
  uint64_t rng = arg->seed;
  /* Until the forks are done, and at least CHURN_BLOCKS blocks. */
  for (size_t i = 0; i < CHURN_BLOCKS || !atomic_load(&forking_done); i++) {
    uint64_t seed = arg->seed * 1000003 + i;
    size_t size = i % 500 == 0 ? LARGE_SIZE : tsan_small_size(&rng);
    uint8_t *b;
    switch (seed % 3) {
      case 0: b = gpa_core_malloc(size); break;
      case 1: b = gpa_alloc(ap, uint8_t, size); break;
      default: b = gpa_alloc(ad, uint8_t, size); break;
    }
    TSAN_CHECK(b != NULL);
    if (b == NULL) continue;
    tsan_block_fill(b, size, seed);
    tsan_queue_push(arg->queue, b);
  }
  tsan_queue_close(arg->queue);
  return NULL;
}

/* ---- the child ------------------------------------------------------------------ */

/* 0 when every allocation and count came out right. */
static int child_work(void) {
  gpa_allocator_t ap = gpa_allocator(&plain), ad = gpa_allocator(&debugged);
  size_t live_before = gpa_live_count(&debugged);
  void *core[CHILD_BLOCKS], *p[CHILD_BLOCKS], *d[CHILD_BLOCKS];
  uint64_t rng = (uint64_t)getpid();
  for (size_t i = 0; i < CHILD_BLOCKS; i++) {
    size_t size = i == 0 ? LARGE_SIZE : tsan_small_size(&rng);
    core[i] = gpa_core_malloc(size);
    p[i] = gpa_alloc(ap, uint8_t, 64);
    d[i] = gpa_alloc(ad, uint8_t, 64);
    if (core[i] == NULL || p[i] == NULL || d[i] == NULL) return 1;
    tsan_block_fill(core[i], size, i);
  }
  if (gpa_live_count(&debugged) != live_before + CHILD_BLOCKS) return 2;
  for (size_t i = 0; i < CHILD_BLOCKS; i++) {
    tsan_block_check(core[i]);
    gpa_core_free(core[i]);
    gpa_free(ap, (uint8_t *)p[i], 64);
    gpa_free(ad, (uint8_t *)d[i], 64);
  }
  if (gpa_live_count(&debugged) != live_before) return 3;
  (void)instance_trim(&gpa_default_instance);
  return atomic_load(&tsan_failures) == 0 ? 0 : 4;
}

static void case_fork_while_allocating(void) {
  TSAN_CHECK(gpa_init(&plain, NULL) == 0);
  gpa_config_t config = GPA_CONFIG_DEFAULT;
  config.debug = (gpa_debug_config_t){.frames = 8, .checks = true, .canaries = true};
  TSAN_CHECK(gpa_init(&debugged, &config) == 0);
  atomic_store(&forking_done, false);

  tsan_queue_t queue;
  tsan_queue_init(&queue, 2);
  churn_arg_t args[] = {{&queue, 1}, {&queue, 2}, {&queue, 0}};
  pthread_t tids[3];
  for (size_t i = 0; i < 3; i++)
    if (pthread_create(&tids[i], NULL, churn_thread, &args[i]) != 0) abort();

  for (size_t f = 0; f < FORKS; f++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(child_work());
    TSAN_CHECK(pid > 0);
    if (pid < 0) break;
    int status = 0;
    TSAN_CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "fork %zu: child status 0x%x\n", f, (unsigned)status);
      TSAN_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
  }
  atomic_store(&forking_done, true);
  for (size_t i = 0; i < 3; i++) pthread_join(tids[i], NULL);
  tsan_queue_destroy(&queue);

  TSAN_CHECK(gpa_deinit(&plain) == GPA_OK);
  TSAN_CHECK(gpa_deinit(&debugged) == GPA_OK);
}

int main(int argc, char **argv) {
  static const tsan_case_t cases[] = {
    {"fork_while_allocating", case_fork_while_allocating},
  };
  return tsan_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}

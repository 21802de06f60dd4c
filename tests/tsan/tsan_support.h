/*
 * tsan_support.h: what the ThreadSanitizer programs share: a runner of
 * named cases, checks that fail a case without aborting the program,
 * threads, and a queue that hands blocks from thread to thread.
 *
 * The programs run without cmocka's runner: a case's verdict is its
 * checks, and ThreadSanitizer's own verdict (a report, with
 * halt_on_error=1) ends the process with its exit code.  Every workload is
 * bounded by counts, never by time.
 */
#ifndef GPA_TSAN_SUPPORT_H
#define GPA_TSAN_SUPPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test_support.h" /* fill(), first_mismatch() */

/* ---- checks: any thread may fail the running case ----------------------- */

static atomic_int tsan_failures;

#define TSAN_CHECK(cond)                                                                    \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
      atomic_fetch_add(&tsan_failures, 1);                                                  \
    }                                                                                       \
  } while (0)

/* A block filled with fill(p, n, seed) must still hold the pattern. */
#define TSAN_CHECK_PATTERN(p, n, seed) TSAN_CHECK(first_mismatch((p), (n), (seed)) == SIZE_MAX)

/* ---- threads -------------------------------------------------------------- */

/* Start `count` threads running `fn(args + i * arg_size)` and wait for them. */
static inline void tsan_run_threads(size_t count, void *(*fn)(void *), void *args, size_t arg_size) {
  pthread_t tids[64];
  if (count > sizeof tids / sizeof tids[0]) abort();
  for (size_t i = 0; i < count; i++)
    if (pthread_create(&tids[i], NULL, fn, (char *)args + i * arg_size) != 0) abort();
  for (size_t i = 0; i < count; i++) pthread_join(tids[i], NULL);
}

/* ---- a bounded queue of pointers (mutex and condition variables) ---------- */

#define TSAN_QUEUE_SLOTS 256

typedef struct tsan_queue {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  void *items[TSAN_QUEUE_SLOTS];
  size_t head, count;
  size_t open_producers; /* the queue is drained and done when it reaches 0 */
} tsan_queue_t;

static inline void tsan_queue_init(tsan_queue_t *q, size_t producers) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  q->open_producers = producers;
}

static inline void tsan_queue_destroy(tsan_queue_t *q) {
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
}

static inline void tsan_queue_push(tsan_queue_t *q, void *item) {
  pthread_mutex_lock(&q->lock);
  while (q->count == TSAN_QUEUE_SLOTS) pthread_cond_wait(&q->not_full, &q->lock);
  q->items[(q->head + q->count++) % TSAN_QUEUE_SLOTS] = item;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

/* One producer is done. */
static inline void tsan_queue_close(tsan_queue_t *q) {
  pthread_mutex_lock(&q->lock);
  q->open_producers--;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

/* The next item, or NULL once every producer is done and the queue empty. */
static inline void *tsan_queue_pop(tsan_queue_t *q) {
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && q->open_producers != 0) pthread_cond_wait(&q->not_empty, &q->lock);
  void *item = NULL;
  if (q->count != 0) {
    item = q->items[q->head];
    q->head = (q->head + 1) % TSAN_QUEUE_SLOTS;
    q->count--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->lock);
  return item;
}

/* ---- waves of threads that exit while another frees their blocks ----------- */

/* What each exiting worker gets: the queue it hands blocks to, its seed. */
typedef struct tsan_exit_arg {
  tsan_queue_t *queue;
  uint64_t seed;
} tsan_exit_arg_t;

/* `waves` waves of `per_wave` threads running `worker`, each wave started
 * once the last has exited (so its threads adopt the heaps left behind),
 * while one thread runs `freer` on the queue the workers hand blocks to. */
static inline void tsan_run_exit_waves(size_t waves, size_t per_wave, void *(*worker)(void *),
                                       void *(*freer)(void *)) {
  tsan_queue_t queue;
  tsan_queue_init(&queue, waves * per_wave);
  pthread_t freeing;
  if (pthread_create(&freeing, NULL, freer, &queue) != 0) abort();
  for (size_t w = 0; w < waves; w++) {
    tsan_exit_arg_t args[64];
    if (per_wave > sizeof args / sizeof args[0]) abort();
    for (size_t i = 0; i < per_wave; i++)
      args[i] = (tsan_exit_arg_t){.queue = &queue, .seed = 1 + (w * per_wave + i) * 100000};
    tsan_run_threads(per_wave, worker, args, sizeof args[0]);
  }
  pthread_join(freeing, NULL);
  tsan_queue_destroy(&queue);
}

/* ---- blocks that carry their own size and pattern seed --------------------
 * The first two words of a handed-over block say how big it is and how it
 * was filled, so whoever frees it can check it first (and give the size to
 * a sized free).  Only a prefix is filled: every byte is instrumented, and a
 * block handed out twice or moved wrongly shows in its first kibibytes. */

#define TSAN_FILL_MAX ((size_t)4096)

typedef struct tsan_block {
  size_t size;
  uint64_t seed;
} tsan_block_t;

static inline size_t tsan_block_filled(size_t size) {
  return (size < TSAN_FILL_MAX ? size : TSAN_FILL_MAX) - sizeof(tsan_block_t);
}

static inline void tsan_block_fill(void *p, size_t size, uint64_t seed) {
  tsan_block_t *b = p;
  b->size = size;
  b->seed = seed;
  fill(b + 1, tsan_block_filled(size), seed);
}

static inline void tsan_block_check(const void *p) {
  const tsan_block_t *b = p;
  TSAN_CHECK_PATTERN(b + 1, tsan_block_filled(b->size), b->seed);
}

/* Sizes from 16 bytes up to 16 KiB, mostly small, from a seed. */
static inline size_t tsan_small_size(uint64_t *rng) {
  uint64_t x = *rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *rng = x;
  size_t shift = 4 + (size_t)(x % 10); /* [2^shift, 2^(shift+1)): 16 B .. 16 KiB */
  size_t size = ((size_t)1 << shift) + (size_t)((x >> 8) % ((size_t)1 << shift));
  return size < sizeof(tsan_block_t) ? sizeof(tsan_block_t) : size;
}

/* ---- the runner ------------------------------------------------------------ */

typedef struct tsan_case {
  const char *name;
  void (*run)(void);
} tsan_case_t;

/* No argument: every case.  `--list`: the cases' names, one a line.  A
 * name: that case alone.  The last line says how many passed and failed;
 * the exit status is 0 only when none failed. */
static inline int tsan_main(int argc, char **argv, const tsan_case_t *cases, size_t count) {
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < count; i++) printf("%s\n", cases[i].name);
    return 0;
  }
  unsigned passed = 0, failed = 0;
  bool found = argc < 2;
  for (size_t i = 0; i < count; i++) {
    if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
    found = true;
    int before = atomic_load(&tsan_failures);
    printf("[ RUN  ] %s\n", cases[i].name);
    fflush(stdout);
    cases[i].run();
    bool ok = atomic_load(&tsan_failures) == before;
    printf("[ %s ] %s\n", ok ? " OK " : "FAIL", cases[i].name);
    if (ok) passed++;
    else failed++;
  }
  if (!found) {
    fprintf(stderr, "%s: no case named '%s' (--list names them)\n", argv[0], argv[1]);
    return 2;
  }
  printf("%u passed, %u failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

#endif /* GPA_TSAN_SUPPORT_H */

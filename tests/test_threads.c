/*
 * test_threads.c: the allocator under several threads, linked against the
 * shared library.
 *
 *   - blocks handed from a producer thread to a consumer that frees them
 *     (remote frees), both directions, and the producer's memory staying
 *     bounded over many rounds (remote frees are reclaimed);
 *   - 4 and 8 threads (oversubscribed) doing random malloc/free/realloc and
 *     passing blocks to each other; and 4 such threads while the main thread
 *     calls malloc_trim(0) and starts threads that leave heaps to the pool;
 *   - 2,000 short-lived threads: memory stays bounded (exited threads' heaps
 *     are reused, not leaked);
 *   - a thread's blocks freed by the main thread after the thread is gone;
 *   - fork() while other threads allocate: every child can allocate, start a
 *     thread and exit.
 *
 * cmocka is not thread-safe: worker threads never assert, they count errors
 * into g_errors and the main thread asserts on the count.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

/* ---- errors seen by worker threads --------------------------------------- */

static atomic_int g_errors;
static char g_first_error[256];
static pthread_mutex_t g_error_lock = PTHREAD_MUTEX_INITIALIZER;

static void worker_error(const char *fmt, ...) {
  if (atomic_fetch_add(&g_errors, 1) == 0) {
    pthread_mutex_lock(&g_error_lock);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_first_error, sizeof g_first_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&g_error_lock);
  }
}

static void assert_no_worker_errors(void) {
  int n = atomic_load(&g_errors);
  if (n != 0) fail_msg("%d error(s) in worker threads; first: %s", n, g_first_error);
}

static void reset_worker_errors(void) {
  atomic_store(&g_errors, 0);
  g_first_error[0] = '\0';
}

/* ---- resident set size --------------------------------------------------- */


/* ---- random numbers and block patterns ----------------------------------- */

static uint64_t rng_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

static uint64_t rng_seed(uint64_t salt) {
  uint64_t s = 0x9E3779B97F4A7C15ull ^ (salt * 0xD1B54A32D192ED03ull);
  return s ? s : 1;
}

/* Sizes: mostly small, some medium, a few big ones (256 KiB..2 MiB: slabs of
 * one block up to 1 MiB, large objects above). */
static size_t pick_size(uint64_t *rng, unsigned large_per_mille) {
  uint64_t r = rng_next(rng);
  unsigned bucket = (unsigned)(r % 1000);
  r >>= 10;
  if (bucket < large_per_mille) return 256 * KiB + 1 + (size_t)(r % (1792 * KiB));
  if (bucket < large_per_mille + 60) return 1 * KiB + (size_t)(r % (63 * KiB + 1)); /* up to 64 KiB */
  if (bucket < large_per_mille + 300) return 129 + (size_t)(r % 896);
  return 8 + (size_t)(r % 121);
}

/* A block's pattern: every byte of the first PATTERN_HEAD, one byte per
 * 4 KiB after that (so every page is touched) and the last 64 bytes. */
#define PATTERN_HEAD ((size_t)512)

static inline uint8_t sparse_pattern_byte(uint32_t seed, size_t i) {
  return (uint8_t)((seed ^ (seed >> 11)) + i * 131u + (i >> 8) * 7u);
}

#define FOR_PATTERN_POSITIONS(size, i, body)                               \
  do {                                                                     \
    size_t head_ = (size) < PATTERN_HEAD ? (size) : PATTERN_HEAD;          \
    for ((i) = 0; (i) < head_; (i)++) { body; }                            \
    if ((size) > PATTERN_HEAD) {                                           \
      for ((i) = PATTERN_HEAD; (i) < (size); (i) += 4096) { body; }        \
      size_t tail_ = (size) - 64 > PATTERN_HEAD ? (size) - 64 : PATTERN_HEAD; \
      for ((i) = tail_; (i) < (size); (i)++) { body; }                     \
    }                                                                      \
  } while (0)

static void pattern_fill(void *p, size_t size, uint32_t seed) {
  uint8_t *b = p;
  size_t i;
  FOR_PATTERN_POSITIONS(size, i, b[i] = sparse_pattern_byte(seed, i));
}

/* True when the pattern written for `size` bytes is intact below `limit`. */
static bool pattern_check_upto(const void *p, size_t size, uint32_t seed, size_t limit) {
  const uint8_t *b = p;
  size_t i;
  bool ok = true;
  FOR_PATTERN_POSITIONS(size, i, if (i < limit && b[i] != sparse_pattern_byte(seed, i)) ok = false);
  return ok;
}

static bool pattern_check(const void *p, size_t size, uint32_t seed) {
  return pattern_check_upto(p, size, seed, size);
}

typedef struct {
  void *p;
  size_t size;
  uint32_t seed;
} item_t;

static bool item_alloc(item_t *it, size_t size, uint32_t seed) {
  it->p = malloc(size);
  it->size = size;
  it->seed = seed;
  if (it->p == NULL) {
    worker_error("malloc(%zu) returned NULL (errno %d)", size, errno);
    return false;
  }
  if (((uintptr_t)it->p & 15) != 0) worker_error("malloc(%zu) = %p is not 16-byte aligned", size, it->p);
  pattern_fill(it->p, size, seed);
  return true;
}

static void item_check_free(item_t *it) {
  if (!pattern_check(it->p, it->size, it->seed))
    worker_error("block %p of %zu bytes lost its contents", it->p, it->size);
  free(it->p);
  it->p = NULL;
}

/* ---- a bounded queue of blocks (mutex + condition variables) -------------- */

#define QUEUE_CAP 2048

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full, round_done;
  item_t buf[QUEUE_CAP];
  size_t head, count;
  bool closed;
  unsigned rounds_consumed; /* end-of-round markers the consumer has seen */
} queue_t;

static void queue_init(queue_t *q) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  pthread_cond_init(&q->round_done, NULL);
}

static void queue_destroy(queue_t *q) {
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
  pthread_cond_destroy(&q->round_done);
}

static void queue_push(queue_t *q, const item_t *items, size_t n) {
  pthread_mutex_lock(&q->lock);
  while (n > 0) {
    while (q->count == QUEUE_CAP) pthread_cond_wait(&q->not_full, &q->lock);
    while (n > 0 && q->count < QUEUE_CAP) {
      q->buf[(q->head + q->count) % QUEUE_CAP] = *items++;
      q->count++;
      n--;
    }
    pthread_cond_signal(&q->not_empty);
  }
  pthread_mutex_unlock(&q->lock);
}

/* Up to `max` items; 0 once the queue is closed and empty. */
static size_t queue_pop(queue_t *q, item_t *out, size_t max) {
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && !q->closed) pthread_cond_wait(&q->not_empty, &q->lock);
  size_t n = 0;
  while (n < max && q->count > 0) {
    out[n++] = q->buf[q->head];
    q->head = (q->head + 1) % QUEUE_CAP;
    q->count--;
  }
  pthread_cond_signal(&q->not_full);
  pthread_mutex_unlock(&q->lock);
  return n;
}

static void queue_close(queue_t *q) {
  pthread_mutex_lock(&q->lock);
  q->closed = true;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

/* An item with p == NULL marks the end of a round. */
static void queue_push_round_end(queue_t *q) {
  item_t marker = { NULL, 0, 0 };
  queue_push(q, &marker, 1);
}

static void queue_wait_rounds(queue_t *q, unsigned rounds) {
  pthread_mutex_lock(&q->lock);
  while (q->rounds_consumed < rounds) pthread_cond_wait(&q->round_done, &q->lock);
  pthread_mutex_unlock(&q->lock);
}

/* Consume until the queue is closed: check and free every block. */
static void consume_all(queue_t *q) {
  item_t batch[256];
  size_t n;
  while ((n = queue_pop(q, batch, 256)) > 0) {
    for (size_t i = 0; i < n; i++) {
      if (batch[i].p == NULL) {
        pthread_mutex_lock(&q->lock);
        q->rounds_consumed++;
        pthread_cond_broadcast(&q->round_done);
        pthread_mutex_unlock(&q->lock);
        continue;
      }
      item_check_free(&batch[i]);
    }
  }
}

/* Allocate `count` blocks and send them, then an end-of-round marker. */
static void produce_round(queue_t *q, size_t count, uint64_t *rng, unsigned large_per_mille) {
  item_t batch[128];
  size_t n = 0;
  for (size_t i = 0; i < count; i++) {
    size_t size = pick_size(rng, large_per_mille);
    if (!item_alloc(&batch[n], size, (uint32_t)rng_next(rng))) continue;
    if (++n == 128) {
      queue_push(q, batch, n);
      n = 0;
    }
  }
  queue_push(q, batch, n);
  queue_push_round_end(q);
}

/* ---- producer/consumer, both directions ---------------------------------- */

#define PC_ROUNDS 4
#define PC_BLOCKS 25000

typedef struct {
  queue_t *out, *in;  /* produce into `out` first, then consume `in` ... */
  bool produce_first; /* ... or the other way round */
  uint64_t salt;
} pc_agent_t;

static void *pc_agent_main(void *arg) {
  pc_agent_t *a = arg;
  uint64_t rng = rng_seed(a->salt);
  if (!a->produce_first) consume_all(a->in);
  for (unsigned r = 0; r < PC_ROUNDS; r++) produce_round(a->out, PC_BLOCKS, &rng, 10);
  queue_close(a->out);
  if (a->produce_first) consume_all(a->in);
  /* The producer's heap got everything back by remote frees: it must still
   * serve allocations of every kind. */
  item_t keep[64];
  for (int i = 0; i < 64; i++) item_alloc(&keep[i], pick_size(&rng, 50), (uint32_t)i);
  for (int i = 0; i < 64; i++)
    if (keep[i].p != NULL) item_check_free(&keep[i]);
  return NULL;
}

static void test_producer_consumer_both_directions(void **state) {
  (void)state;
  reset_worker_errors();
  static queue_t a_to_b, b_to_a;
  queue_init(&a_to_b);
  queue_init(&b_to_a);
  pc_agent_t a = { &a_to_b, &b_to_a, true, 1 };
  pc_agent_t b = { &b_to_a, &a_to_b, false, 2 };
  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, pc_agent_main, &a), 0);
  assert_int_equal(pthread_create(&tb, NULL, pc_agent_main, &b), 0);
  assert_int_equal(pthread_join(ta, NULL), 0);
  assert_int_equal(pthread_join(tb, NULL), 0);
  assert_no_worker_errors();
  assert_int_equal(a_to_b.rounds_consumed, PC_ROUNDS);
  assert_int_equal(b_to_a.rounds_consumed, PC_ROUNDS);
  queue_destroy(&a_to_b);
  queue_destroy(&b_to_a);
}

/* ---- remote frees are reclaimed: the producer's memory stays bounded ----- */

#define RB_ROUNDS 20
#define RB_BLOCKS 100000

typedef struct {
  queue_t *q;
  size_t rss_after_round[RB_ROUNDS];
  size_t arena_after_round[RB_ROUNDS];
} rb_producer_t;

/* Sizes for the bounded-memory test: 16..2 KiB with a few 32 KiB blocks;
 * about 100 MB per round of 100,000 blocks. */
static size_t rb_size(uint64_t *rng) {
  uint64_t r = rng_next(rng);
  if (r % 256 == 0) return 32 * KiB;
  return 16 + (size_t)((r >> 8) % 2033);
}

static void *rb_producer_main(void *arg) {
  rb_producer_t *p = arg;
  uint64_t rng = rng_seed(77);
  item_t batch[128];
  for (unsigned r = 0; r < RB_ROUNDS; r++) {
    size_t n = 0;
    for (size_t i = 0; i < RB_BLOCKS; i++) {
      if (!item_alloc(&batch[n], rb_size(&rng), (uint32_t)rng_next(&rng))) continue;
      if (++n == 128) {
        queue_push(p->q, batch, n);
        n = 0;
      }
    }
    queue_push(p->q, batch, n);
    queue_push_round_end(p->q);
    queue_wait_rounds(p->q, r + 1); /* everything of this round is freed */
    p->rss_after_round[r] = rss_bytes();
    p->arena_after_round[r] = mallinfo2().arena;
  }
  queue_close(p->q);
  /* It can keep allocating afterwards. */
  item_t more[1000];
  for (int i = 0; i < 1000; i++) item_alloc(&more[i], rb_size(&rng), (uint32_t)i);
  for (int i = 0; i < 1000; i++)
    if (more[i].p != NULL) item_check_free(&more[i]);
  return NULL;
}

static void *rb_consumer_main(void *arg) {
  consume_all(arg);
  return NULL;
}

static void test_remote_frees_keep_memory_bounded(void **state) {
  (void)state;
  reset_worker_errors();
  static queue_t q;
  queue_init(&q);
  static rb_producer_t prod;
  memset(&prod, 0, sizeof prod);
  prod.q = &q;
  pthread_t tp, tc;
  assert_int_equal(pthread_create(&tc, NULL, rb_consumer_main, &q), 0);
  assert_int_equal(pthread_create(&tp, NULL, rb_producer_main, &prod), 0);
  assert_int_equal(pthread_join(tp, NULL), 0);
  assert_int_equal(pthread_join(tc, NULL), 0);
  assert_no_worker_errors();
  assert_int_equal(q.rounds_consumed, RB_ROUNDS);
  queue_destroy(&q);

  /* Each round allocates about 100 MB in total while at most a queue's worth
   * is alive at once.  Were remote frees never reclaimed, every round would
   * add its 100 MB; reclaimed, later rounds reuse the first round's memory. */
  size_t base_rss = prod.rss_after_round[0], base_arena = prod.arena_after_round[0];
  print_message("RSS after round 0: %zu MiB, after round %d: %zu MiB; small segments %zu -> %zu MiB\n",
                base_rss / MiB, RB_ROUNDS - 1, prod.rss_after_round[RB_ROUNDS - 1] / MiB,
                base_arena / MiB, prod.arena_after_round[RB_ROUNDS - 1] / MiB);
  for (unsigned r = 1; r < RB_ROUNDS; r++) {
    if (prod.rss_after_round[r] > base_rss + 64 * MiB)
      fail_msg("RSS after round %u is %zu MiB, after round 0 %zu MiB: remote frees not reclaimed?",
               r, prod.rss_after_round[r] / MiB, base_rss / MiB);
    if (prod.arena_after_round[r] > base_arena + 64 * MiB)
      fail_msg("small segments after round %u: %zu MiB, after round 0 %zu MiB",
               r, prod.arena_after_round[r] / MiB, base_arena / MiB);
  }
}

/* ---- N threads: random malloc/free/realloc, blocks passed around --------- */

#define MT_MAX_THREADS 8
#define MT_SLOTS 256
#define MT_MAILBOX 512

typedef struct {
  pthread_mutex_t lock;
  item_t items[MT_MAILBOX];
  size_t count;
} mailbox_t;

typedef struct {
  unsigned index, nthreads;
  unsigned ops;
  mailbox_t *boxes;
  pthread_barrier_t *barrier;
} mt_arg_t;

static atomic_uint mt_finished; /* workers that are done */

static bool mailbox_post(mailbox_t *box, const item_t *it) {
  bool ok = false;
  pthread_mutex_lock(&box->lock);
  if (box->count < MT_MAILBOX) {
    box->items[box->count++] = *it;
    ok = true;
  }
  pthread_mutex_unlock(&box->lock);
  return ok;
}

static void mailbox_drain(mailbox_t *box) {
  item_t local[MT_MAILBOX];
  pthread_mutex_lock(&box->lock);
  size_t n = box->count;
  memcpy(local, box->items, n * sizeof local[0]);
  box->count = 0;
  pthread_mutex_unlock(&box->lock);
  for (size_t i = 0; i < n; i++) item_check_free(&local[i]);
}

static void *mt_main(void *argp) {
  mt_arg_t *a = argp;
  uint64_t rng = rng_seed(1000 + a->index);
  item_t slots[MT_SLOTS];
  memset(slots, 0, sizeof slots);
  for (unsigned op = 0; op < a->ops; op++) {
    if ((op & 63) == 0) mailbox_drain(&a->boxes[a->index]);
    uint64_t r = rng_next(&rng);
    item_t *it = &slots[r % MT_SLOTS];
    unsigned what = (unsigned)((r >> 16) % 100);
    if (it->p == NULL) {
      size_t size = pick_size(&rng, 3);
      if (what < 10) {
        /* calloc'ed blocks must be zero */
        it->p = calloc(1, size);
        it->size = size;
        it->seed = (uint32_t)r;
        if (it->p == NULL) {
          worker_error("calloc(1, %zu) returned NULL", size);
          continue;
        }
        const uint8_t *b = it->p;
        size_t i;
        bool zero = true;
        FOR_PATTERN_POSITIONS(size, i, if (b[i] != 0) zero = false);
        if (!zero) worker_error("calloc(1, %zu) = %p is not zeroed", size, it->p);
        pattern_fill(it->p, size, it->seed);
      } else {
        item_alloc(it, size, (uint32_t)r);
      }
      continue;
    }
    if (!pattern_check(it->p, it->size, it->seed))
      worker_error("thread %u: block %p of %zu bytes lost its contents", a->index, it->p, it->size);
    if (what < 35) {
      free(it->p);
      it->p = NULL;
    } else if (what < 70) {
      size_t size = pick_size(&rng, 3);
      void *q = realloc(it->p, size);
      if (q == NULL) {
        worker_error("realloc(%p, %zu) returned NULL", it->p, size);
        continue;
      }
      size_t keep = size < it->size ? size : it->size;
      if (!pattern_check_upto(q, it->size, it->seed, keep))
        worker_error("realloc %zu -> %zu bytes lost the contents", it->size, size);
      it->p = q;
      it->size = size;
      it->seed = (uint32_t)(r >> 32);
      pattern_fill(q, size, it->seed);
    } else {
      unsigned to = (unsigned)((r >> 40) % a->nthreads);
      if (to == a->index || !mailbox_post(&a->boxes[to], it)) free(it->p);
      it->p = NULL;
    }
  }
  /* Nobody posts after the barrier: the last drain gets everything. */
  pthread_barrier_wait(a->barrier);
  mailbox_drain(&a->boxes[a->index]);
  for (unsigned i = 0; i < MT_SLOTS; i++)
    if (slots[i].p != NULL) item_check_free(&slots[i]);
  atomic_fetch_add(&mt_finished, 1);
  return NULL;
}

/* A short-lived thread for the trimming test: leaves half its blocks to the
 * main thread, so the heap it leaves in the pool has blocks freed remotely
 * while malloc_trim collects it. */
typedef struct {
  unsigned index;
  item_t blocks[64];
} trim_helper_t;

static void *trim_helper_main(void *argp) {
  trim_helper_t *h = argp;
  uint64_t rng = rng_seed(7000 + h->index);
  for (unsigned i = 0; i < 64; i++) item_alloc(&h->blocks[i], pick_size(&rng, 20), (uint32_t)rng_next(&rng));
  for (unsigned i = 0; i < 64; i += 2)
    if (h->blocks[i].p != NULL) item_check_free(&h->blocks[i]);
  return NULL;
}

/* While the workers run: trim, read statistics, and start and end threads
 * whose heaps go to the pool with blocks still live. */
static void trim_until_workers_finish(unsigned nthreads) {
  static trim_helper_t helpers[2];
  unsigned round = 0;
  bool pending = false;
  while (atomic_load(&mt_finished) < nthreads) {
    trim_helper_t *cur = &helpers[round % 2], *prev = &helpers[(round + 1) % 2];
    memset(cur, 0, sizeof *cur);
    cur->index = round;
    pthread_t t;
    if (pthread_create(&t, NULL, trim_helper_main, cur) != 0) {
      worker_error("pthread_create failed");
      break;
    }
    if (pending) /* the previous helper's blocks, freed while this one runs */
      for (unsigned i = 1; i < 64; i += 2)
        if (prev->blocks[i].p != NULL) item_check_free(&prev->blocks[i]);
    malloc_trim(0);
    (void)mallinfo2();
    pthread_join(t, NULL);
    pending = true;
    round++;
  }
  if (pending)
    for (unsigned i = 1; i < 64; i += 2)
      if (helpers[(round + 1) % 2].blocks[i].p != NULL) item_check_free(&helpers[(round + 1) % 2].blocks[i]);
}

static void run_random_threads(unsigned nthreads, unsigned ops, bool trim) {
  reset_worker_errors();
  static mailbox_t boxes[MT_MAX_THREADS];
  mt_arg_t args[MT_MAX_THREADS];
  pthread_t tids[MT_MAX_THREADS];
  pthread_barrier_t barrier;
  assert_int_equal(pthread_barrier_init(&barrier, NULL, nthreads), 0);
  for (unsigned i = 0; i < nthreads; i++) {
    pthread_mutex_init(&boxes[i].lock, NULL);
    boxes[i].count = 0;
    args[i] = (mt_arg_t){ i, nthreads, ops, boxes, &barrier };
  }
  atomic_store(&mt_finished, 0);
  for (unsigned i = 0; i < nthreads; i++)
    assert_int_equal(pthread_create(&tids[i], NULL, mt_main, &args[i]), 0);
  if (trim) trim_until_workers_finish(nthreads);
  for (unsigned i = 0; i < nthreads; i++) assert_int_equal(pthread_join(tids[i], NULL), 0);
  pthread_barrier_destroy(&barrier);
  for (unsigned i = 0; i < nthreads; i++) {
    assert_int_equal(boxes[i].count, 0);
    pthread_mutex_destroy(&boxes[i].lock);
  }
  assert_no_worker_errors();
}

static void test_random_4_threads(void **state) {
  (void)state;
  run_random_threads(4, 120000, false);
}

static void test_random_8_threads(void **state) {
  (void)state;
  run_random_threads(8, 60000, false);
}

/* malloc_trim(0) walks the pooled heaps and the caches while other threads
 * allocate, free remotely, and leave heaps to the pool. */
static void test_trim_while_threads_work(void **state) {
  (void)state;
  run_random_threads(4, 60000, true);
}

/* ---- 2,000 short-lived threads ------------------------------------------ */

#define SL_THREADS 2000
#define SL_BATCH 8
#define SL_BLOCKS 200
#define SL_KEEP 8

typedef struct {
  unsigned index;
  item_t kept[SL_KEEP]; /* handed to the main thread */
} sl_arg_t;

static void *sl_main(void *argp) {
  sl_arg_t *a = argp;
  uint64_t rng = rng_seed(5000 + a->index);
  item_t blocks[SL_BLOCKS];
  for (unsigned i = 0; i < SL_BLOCKS; i++) {
    size_t size = (i % 50 == 49) ? 40 * KiB : 16 + (size_t)(rng_next(&rng) % 4081);
    item_alloc(&blocks[i], size, (uint32_t)rng_next(&rng));
  }
  /* Keep every 25th block for the main thread, free the rest. */
  unsigned k = 0;
  for (unsigned i = 0; i < SL_BLOCKS; i++) {
    if (blocks[i].p == NULL) continue;
    if (i % 25 == 0 && k < SL_KEEP) a->kept[k++] = blocks[i];
    else item_check_free(&blocks[i]);
  }
  return NULL;
}

static void free_kept(sl_arg_t *args, unsigned n) {
  for (unsigned t = 0; t < n; t++)
    for (unsigned k = 0; k < SL_KEEP; k++)
      if (args[t].kept[k].p != NULL) item_check_free(&args[t].kept[k]);
}

static void test_short_lived_threads(void **state) {
  (void)state;
  reset_worker_errors();
  static sl_arg_t args[2][SL_BATCH];
  size_t rss_base = 0, arena_base = 0, rss_max = 0, arena_max = 0;
  for (unsigned b = 0; b < SL_THREADS / SL_BATCH; b++) {
    sl_arg_t *cur = args[b % 2];
    memset(cur, 0, sizeof args[0]);
    pthread_t tids[SL_BATCH];
    for (unsigned i = 0; i < SL_BATCH; i++) {
      cur[i].index = b * SL_BATCH + i;
      assert_int_equal(pthread_create(&tids[i], NULL, sl_main, &cur[i]), 0);
    }
    for (unsigned i = 0; i < SL_BATCH; i++) assert_int_equal(pthread_join(tids[i], NULL), 0);
    /* The previous batch's blocks outlived their threads by a batch. */
    if (b > 0) free_kept(args[(b + 1) % 2], SL_BATCH);
    size_t rss = rss_bytes(), arena = mallinfo2().arena;
    if (b == 0) {
      rss_base = rss;
      arena_base = arena;
    }
    if (rss > rss_max) rss_max = rss;
    if (arena > arena_max) arena_max = arena;
  }
  free_kept(args[(SL_THREADS / SL_BATCH - 1) % 2], SL_BATCH);
  assert_no_worker_errors();
  print_message("RSS after the first batch %zu MiB, at most %zu MiB; small segments %zu -> at most %zu MiB\n",
                rss_base / MiB, rss_max / MiB, arena_base / MiB, arena_max / MiB);
  /* Each thread dirties ~0.5 MB; 2,000 leaked heaps would hold ~1 GB
   * resident and 8 GB of segments. */
  if (rss_max > rss_base + 64 * MiB)
    fail_msg("RSS grew from %zu MiB after the first batch to %zu MiB over %d threads",
             rss_base / MiB, rss_max / MiB, SL_THREADS);
  if (arena_max > arena_base + 64 * MiB)
    fail_msg("small segments grew from %zu MiB after the first batch to %zu MiB over %d threads",
             arena_base / MiB, arena_max / MiB, SL_THREADS);
}

/* ---- a thread's blocks freed after it is gone --------------------------- */

#define TE_BLOCKS 1000
#define TE_ROUNDS 60

typedef struct {
  unsigned round;
  item_t blocks[TE_BLOCKS];
} te_arg_t;

static void *te_main(void *argp) {
  te_arg_t *a = argp;
  uint64_t rng = rng_seed(9000 + a->round);
  for (unsigned i = 0; i < TE_BLOCKS; i++) {
    size_t size = (i % 250 == 0) ? 300 * KiB + (size_t)(rng_next(&rng) % (600 * KiB)) : pick_size(&rng, 0);
    item_alloc(&a->blocks[i], size, (uint32_t)rng_next(&rng));
  }
  return NULL;
}

static void test_blocks_freed_after_thread_exit(void **state) {
  (void)state;
  reset_worker_errors();
  static te_arg_t arg;
  size_t arena_base = 0, rss_base = 0;
  for (unsigned r = 0; r < TE_ROUNDS; r++) {
    memset(&arg, 0, sizeof arg);
    arg.round = r;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, te_main, &arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    /* The thread is gone: its blocks are still valid, and free works. */
    for (unsigned i = 0; i < TE_BLOCKS; i++)
      if (arg.blocks[i].p != NULL) item_check_free(&arg.blocks[i]);
    assert_no_worker_errors();
    if (r == 0) {
      arena_base = mallinfo2().arena;
      rss_base = rss_bytes();
    }
  }
  /* The memory is reusable: the next threads adopted the heap and got the
   * freed blocks back, so 60 rounds did not pile up 60 rounds of memory. */
  size_t arena = mallinfo2().arena, rss = rss_bytes();
  print_message("RSS %zu -> %zu MiB, small segments %zu -> %zu MiB\n", rss_base / MiB, rss / MiB,
                arena_base / MiB, arena / MiB);
  if (arena > arena_base + 64 * MiB)
    fail_msg("small segments grew from %zu MiB to %zu MiB over %d rounds", arena_base / MiB, arena / MiB, TE_ROUNDS);
  if (rss > rss_base + 64 * MiB)
    fail_msg("RSS grew from %zu MiB to %zu MiB over %d rounds", rss_base / MiB, rss / MiB, TE_ROUNDS);
  /* And the main thread can allocate what was freed. */
  item_t check[2000];
  uint64_t rng = rng_seed(4242);
  for (int i = 0; i < 2000; i++) assert_true(item_alloc(&check[i], pick_size(&rng, 2), (uint32_t)i));
  for (int i = 0; i < 2000; i++) item_check_free(&check[i]);
  assert_no_worker_errors();
}

/* ---- fork while other threads allocate ---------------------------------- */

#define FORK_WORKERS 4
#define FORK_CHILDREN 40
#define FORK_DEADLINE_S 10

static atomic_bool fork_stop;

/* Workers 2..4 cycle one large block size, which takes the instance lock
 * (the large cache) twice per cycle, so a fork often comes while a worker
 * holds it (without the atfork handlers about 8% of the children would then
 * hang); worker 1 allocates a mix of sizes. */
static void *fork_worker(void *argp) {
  uintptr_t index = (uintptr_t)argp;
  uint64_t rng = rng_seed(index);
  item_t slots[64];
  memset(slots, 0, sizeof slots);
  while (!atomic_load_explicit(&fork_stop, memory_order_relaxed)) {
    uint64_t r = rng_next(&rng);
    if (index != 1) {
      size_t size = 400 * KiB; /* one size: every cycle reuses the cached mapping */
      uint8_t *p = malloc(size);
      if (p == NULL) {
        worker_error("malloc(%zu) returned NULL", size);
        break;
      }
      p[0] = p[size - 1] = (uint8_t)r;
      free(p);
      continue;
    }
    item_t *it = &slots[r % 64];
    if (it->p != NULL) item_check_free(it);
    else item_alloc(it, pick_size(&rng, 20), (uint32_t)r);
  }
  for (int i = 0; i < 64; i++)
    if (slots[i].p != NULL) item_check_free(&slots[i]);
  return NULL;
}

/* In the child: only exit codes, no cmocka. */
static bool child_alloc_some(uint64_t salt) {
  uint64_t rng = rng_seed(salt);
  item_t blocks[300];
  for (int i = 0; i < 300; i++) {
    size_t size = (i % 60 == 0) ? 1 * MiB + (size_t)i : pick_size(&rng, 0);
    blocks[i].size = size;
    blocks[i].seed = (uint32_t)rng_next(&rng);
    blocks[i].p = malloc(size);
    if (blocks[i].p == NULL) return false;
    pattern_fill(blocks[i].p, size, blocks[i].seed);
  }
  bool ok = true;
  for (int i = 0; i < 300; i++) {
    if (!pattern_check(blocks[i].p, blocks[i].size, blocks[i].seed)) ok = false;
    free(blocks[i].p);
  }
  return ok;
}

static void *child_thread(void *arg) {
  return child_alloc_some((uintptr_t)arg) ? (void *)1 : NULL;
}

static void fork_child(unsigned i) {
  if (!child_alloc_some(100 + i)) _exit(2);
  pthread_t t;
  if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(200 + i)) != 0) _exit(3);
  void *res = NULL;
  if (pthread_join(t, &res) != 0 || res == NULL) _exit(4);
  if (!child_alloc_some(300 + i)) _exit(5);
  _exit(0);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_fork_while_threads_allocate(void **state) {
  (void)state;
  reset_worker_errors();
  atomic_store(&fork_stop, false);
  pthread_t workers[FORK_WORKERS];
  for (uintptr_t i = 0; i < FORK_WORKERS; i++)
    assert_int_equal(pthread_create(&workers[i], NULL, fork_worker, (void *)(i + 1)), 0);

  pid_t pids[FORK_CHILDREN];
  int status[FORK_CHILDREN];
  bool done[FORK_CHILDREN];
  unsigned forked = 0;
  for (unsigned i = 0; i < FORK_CHILDREN; i++) {
    /* The parent's main thread allocates between forks too. */
    void *p = malloc(64 + i), *big = malloc(2 * MiB);
    pid_t pid = fork();
    if (pid == 0) fork_child(i);
    free(p);
    free(big);
    if (pid < 0) break;
    pids[forked] = pid;
    done[forked] = false;
    forked++;
    usleep(2000); /* let the workers get back into the allocator */
  }

  double deadline = now_s() + FORK_DEADLINE_S;
  unsigned remaining = forked;
  while (remaining > 0 && now_s() < deadline) {
    for (unsigned i = 0; i < forked; i++) {
      if (done[i]) continue;
      pid_t r = waitpid(pids[i], &status[i], WNOHANG);
      if (r == pids[i]) {
        done[i] = true;
        remaining--;
      }
    }
    if (remaining > 0) usleep(5000);
  }
  unsigned hung = 0;
  for (unsigned i = 0; i < forked; i++) {
    if (done[i]) continue;
    hung++;
    kill(pids[i], SIGKILL);
    waitpid(pids[i], &status[i], 0);
  }

  atomic_store(&fork_stop, true);
  for (unsigned i = 0; i < FORK_WORKERS; i++) assert_int_equal(pthread_join(workers[i], NULL), 0);
  assert_no_worker_errors();

  assert_int_equal(forked, FORK_CHILDREN);
  if (hung > 0) fail_msg("%u of %u children did not exit within %d s (deadlock after fork?)", hung, forked, FORK_DEADLINE_S);
  for (unsigned i = 0; i < forked; i++) {
    if (!WIFEXITED(status[i]) || WEXITSTATUS(status[i]) != 0) {
      if (WIFSIGNALED(status[i]))
        fail_msg("child %u died of signal %d", i, WTERMSIG(status[i]));
      fail_msg("child %u exited with status %d", i, WEXITSTATUS(status[i]));
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_producer_consumer_both_directions),
    cmocka_unit_test(test_remote_frees_keep_memory_bounded),
    cmocka_unit_test(test_random_4_threads),
    cmocka_unit_test(test_random_8_threads),
    cmocka_unit_test(test_trim_while_threads_work),
    cmocka_unit_test(test_short_lived_threads),
    cmocka_unit_test(test_blocks_freed_after_thread_exit),
    cmocka_unit_test(test_fork_while_threads_allocate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

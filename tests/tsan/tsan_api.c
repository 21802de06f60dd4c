/*
 * tsan_api.c: explicit instances (gpa.h) under ThreadSanitizer.
 *
 *   - a thread-safe gpa_t: producers hand blocks to consumers that free
 *     them, small and large;
 *   - a single-thread gpa_t passed from thread to thread under a lock;
 *   - a gpa_t whose threads exit (their heaps go back to the instance)
 *     while another thread frees their blocks;
 *   - instance_trim on a gpa_t's instance while its threads work;
 *   - the debug layer (leaks, checks, canaries, a quarantine): its walks
 *     (gpa_live_count, gpa_live_bytes, gpa_owns, the statistics) racing
 *     threads that allocate and free, then the leak check at deinit;
 *   - a walk, then another thread's free of a block the walk read, the
 *     two ordered by the library alone.
 *
 * Every case ends with gpa_deinit, whose verdict (GPA_OK, or the one block
 * left live on purpose) is checked.
 */
#include <gpa.h>
#include <sched.h>

#include "internal.h"
#include "tsan_support.h"

#define KiB ((size_t)1 << 10)

/* Instances live in static storage: any thread may use them, and none of
 * them sits in another thread's stack frame. */
static gpa_t instance;

static void instance_setup(const gpa_config_t *config) { TSAN_CHECK(gpa_init(&instance, config) == 0); }

static void instance_teardown_expect(size_t leaked_blocks) {
  gpa_status_t status = gpa_deinit(&instance);
  TSAN_CHECK(status == (leaked_blocks == 0 ? GPA_OK : GPA_LEAK));
  TSAN_CHECK(instance.leaked_blocks == leaked_blocks);
}

/* A block of `size` bytes through the instance, with its header filled. */
static void *api_block(gpa_allocator_t a, size_t size, uint64_t seed) {
  uint8_t *b = gpa_alloc(a, uint8_t, size);
  TSAN_CHECK(b != NULL);
  if (b != NULL) tsan_block_fill(b, size, seed);
  return b;
}

static void api_block_free(gpa_allocator_t a, void *p) {
  tsan_block_check(p);
  uint8_t *b = p;
  gpa_free(a, b, ((tsan_block_t *)p)->size);
}

/* ---- producers and consumers ------------------------------------------- */

#define PC_BLOCKS_PER_PRODUCER 3000
/* Every this many blocks a producer's is a large one (above 256 KiB). */
#define PC_LARGE_EVERY 200
#define PC_LARGE_SIZE (300 * KiB)

typedef struct pc_arg {
  tsan_queue_t *queue;
  uint64_t seed; /* 0: consumer */
} pc_arg_t;

static void *pc_thread(void *p) {
  pc_arg_t *arg = p;
  gpa_allocator_t a = gpa_allocator(&instance);
  if (arg->seed == 0) {
    for (void *b; (b = tsan_queue_pop(arg->queue)) != NULL;) api_block_free(a, b);
    return NULL;
  }
  uint64_t rng = arg->seed;
  for (size_t i = 0; i < PC_BLOCKS_PER_PRODUCER; i++) {
    size_t size = i % PC_LARGE_EVERY == 0 ? PC_LARGE_SIZE : tsan_small_size(&rng);
    void *b = api_block(a, size, arg->seed + i);
    if (b != NULL) tsan_queue_push(arg->queue, b);
  }
  tsan_queue_close(arg->queue);
  return NULL;
}

static void run_producers_consumers(void) {
  tsan_queue_t queue;
  tsan_queue_init(&queue, 2);
  pc_arg_t args[] = {{&queue, 101}, {&queue, 202}, {&queue, 0}, {&queue, 0}};
  tsan_run_threads(sizeof args / sizeof args[0], pc_thread, args, sizeof args[0]);
  tsan_queue_destroy(&queue);
}

static void case_producer_consumer(void) {
  instance_setup(NULL);
  run_producers_consumers();
  TSAN_CHECK(gpa_live_count(&instance) == 0);
  instance_teardown_expect(0);
}

/* ---- a single-thread instance, one thread at a time ---------------------- */

#define SINGLE_THREADS 4
#define SINGLE_TURNS 200
#define SINGLE_HELD 64

/* The blocks a turn leaves for the next: the lock that passes the instance
 * from thread to thread guards them too. */
static pthread_mutex_t single_lock = PTHREAD_MUTEX_INITIALIZER;
static void *single_held[SINGLE_HELD];

static void *single_thread(void *p) {
  uint64_t rng = (uint64_t)(uintptr_t)p;
  for (size_t turn = 0; turn < SINGLE_TURNS; turn++) {
    pthread_mutex_lock(&single_lock);
    gpa_allocator_t a = gpa_allocator(&instance);
    /* Replace a few of the blocks earlier turns (other threads) left. */
    for (size_t k = 0; k < 4; k++) {
      size_t i = (size_t)(rng >> 5) % SINGLE_HELD;
      if (single_held[i] != NULL) api_block_free(a, single_held[i]);
      single_held[i] = api_block(a, tsan_small_size(&rng), rng);
    }
    pthread_mutex_unlock(&single_lock);
  }
  return NULL;
}

static void case_single_thread_instance(void) {
  gpa_config_t config = GPA_CONFIG_DEFAULT;
  config.thread_safe = false;
  instance_setup(&config);
  uintptr_t seeds[SINGLE_THREADS] = {3, 5, 7, 11};
  tsan_run_threads(SINGLE_THREADS, single_thread, seeds, sizeof seeds[0]);
  gpa_allocator_t a = gpa_allocator(&instance);
  for (size_t i = 0; i < SINGLE_HELD; i++) {
    if (single_held[i] != NULL) api_block_free(a, single_held[i]);
    single_held[i] = NULL;
  }
  instance_teardown_expect(0);
}

/* ---- threads exiting while another frees their blocks ---------------------- */

#define EXIT_WAVES 6
#define EXIT_THREADS_PER_WAVE 4
#define EXIT_BLOCKS_PER_THREAD 200

static void *exit_worker(void *p) {
  tsan_exit_arg_t *arg = p;
  gpa_allocator_t a = gpa_allocator(&instance);
  uint64_t rng = arg->seed;
  for (size_t i = 0; i < EXIT_BLOCKS_PER_THREAD; i++) {
    void *b = api_block(a, tsan_small_size(&rng), arg->seed + i);
    if (b == NULL) continue;
    if (i % 2 == 0) tsan_queue_push(arg->queue, b);
    else api_block_free(a, b);
  }
  tsan_queue_close(arg->queue);
  return NULL;
}

static void *exit_freer(void *p) {
  gpa_allocator_t a = gpa_allocator(&instance);
  for (void *b; (b = tsan_queue_pop(p)) != NULL;) api_block_free(a, b);
  return NULL;
}

static void case_thread_exit(void) {
  instance_setup(NULL);
  tsan_run_exit_waves(EXIT_WAVES, EXIT_THREADS_PER_WAVE, exit_worker, exit_freer);
  TSAN_CHECK(gpa_live_count(&instance) == 0);
  instance_teardown_expect(0);
}

/* ---- trim while the instance's threads work --------------------------------- */

#define TRIM_ROUNDS 60

static void *trim_short_lived(void *p) {
  gpa_allocator_t a = gpa_allocator(&instance);
  uint64_t rng = (uint64_t)(uintptr_t)p;
  for (size_t i = 0; i < 16; i++) api_block_free(a, api_block(a, tsan_small_size(&rng), rng));
  return NULL;
}

static void *trim_thread(void *p) {
  (void)p;
  for (size_t r = 0; r < TRIM_ROUNDS; r++) {
    pthread_t t;
    if (pthread_create(&t, NULL, trim_short_lived, (void *)(uintptr_t)(r + 1)) != 0) abort();
    (void)instance_trim(instance.instance);
    pthread_join(t, NULL);
  }
  return NULL;
}

static void case_trim_while_working(void) {
  instance_setup(NULL);
  pthread_t trimmer;
  if (pthread_create(&trimmer, NULL, trim_thread, NULL) != 0) abort();
  run_producers_consumers();
  pthread_join(trimmer, NULL);
  TSAN_CHECK(gpa_live_count(&instance) == 0);
  instance_teardown_expect(0);
}

/* ---- the debug layer's walks racing its operations -------------------------- */

/* Each churner holds DEBUG_HELD blocks at all times and replaces them one at
 * a time, so between its operations it has DEBUG_HELD or DEBUG_HELD + 1
 * live; a pause stops it between operations. */
#define DEBUG_CHURNERS 3
#define DEBUG_HELD 32
#define DEBUG_REPLACEMENTS 3000
#define DEBUG_WALKS 150
/* Blocks in flight between the two producers and two consumers at most:
 * the queue's and one in each of the four threads' hands. */
#define DEBUG_IN_FLIGHT (TSAN_QUEUE_SLOTS + 4)

static atomic_int debug_churners_ready;

static void *debug_churner(void *p) {
  gpa_allocator_t a = gpa_allocator(&instance);
  uint64_t rng = (uint64_t)(uintptr_t)p;
  void *held[DEBUG_HELD];
  for (size_t i = 0; i < DEBUG_HELD; i++) held[i] = api_block(a, tsan_small_size(&rng), rng);
  atomic_fetch_add(&debug_churners_ready, 1);
  for (size_t r = 0; r < DEBUG_REPLACEMENTS; r++) {
    size_t i = (size_t)(rng >> 7) % DEBUG_HELD;
    void *fresh = api_block(a, tsan_small_size(&rng), rng);
    if (held[i] != NULL) api_block_free(a, held[i]);
    held[i] = fresh;
  }
  for (size_t i = 0; i < DEBUG_HELD; i++)
    if (held[i] != NULL) api_block_free(a, held[i]);
  return NULL;
}

typedef struct debug_walker_arg {
  const void *kept; /* a block live throughout */
} debug_walker_arg_t;

static void *debug_walker(void *p) {
  debug_walker_arg_t *arg = p;
  while (atomic_load(&debug_churners_ready) < DEBUG_CHURNERS) sched_yield();
  for (size_t w = 0; w < DEBUG_WALKS; w++) {
    size_t count = gpa_live_count(&instance);
    size_t bytes = gpa_live_bytes(&instance);
    /* The kept block, and at most every churner's and the producers' and consumers'. */
    TSAN_CHECK(count >= 1 && count <= DEBUG_CHURNERS * (DEBUG_HELD + 1) + DEBUG_IN_FLIGHT + 1);
    TSAN_CHECK(bytes >= count * sizeof(tsan_block_t));
    TSAN_CHECK(gpa_owns(&instance, arg->kept));
    if (w % 50 == 0) gpa_stats_print(&instance);
  }
  return NULL;
}

static void case_debug_walks(void) {
  gpa_config_t config = GPA_CONFIG_DEFAULT;
  config.debug = (gpa_debug_config_t){
    .leaks = true,
    .frames = 8,
    .checks = true,
    .canaries = true,
    .quarantine = 64 * KiB,
    .stats = true,
    .log_path = "/dev/null", /* the one leak below is on purpose */
  };
  instance_setup(&config);
  gpa_allocator_t a = gpa_allocator(&instance);
  void *kept = api_block(a, 100, 42);
  atomic_store(&debug_churners_ready, 0);

  pthread_t churners[DEBUG_CHURNERS], walker;
  debug_walker_arg_t walker_arg = {.kept = kept};
  for (size_t i = 0; i < DEBUG_CHURNERS; i++)
    if (pthread_create(&churners[i], NULL, debug_churner, (void *)((i + 1) * 7919)) != 0) abort();
  if (pthread_create(&walker, NULL, debug_walker, &walker_arg) != 0) abort();
  run_producers_consumers();
  for (size_t i = 0; i < DEBUG_CHURNERS; i++) pthread_join(churners[i], NULL);
  pthread_join(walker, NULL);

  TSAN_CHECK(gpa_live_count(&instance) == 1);
  TSAN_CHECK(gpa_owns(&instance, kept));
  instance_teardown_expect(1); /* the kept block, found by the leak check */
}

/* ---- a walk, then a free of a block the walk read --------------------------
 * The program orders the two only with relaxed flags, as it may: nothing
 * obliges it to synchronise with the library's walks.  The library must
 * itself make its walk happen before the operations that begin after it
 * (with halt_on_error, this case stops on the first that does not). */

#define WALK_THEN_FREE_ROUNDS 20

static atomic_int walk_stage; /* 1: block allocated; 2: walk done */

static void *walk_then_free_thread(void *p) {
  (void)p;
  gpa_allocator_t a = gpa_allocator(&instance);
  for (int r = 0; r < WALK_THEN_FREE_ROUNDS; r++) {
    void *b = api_block(a, 64, (uint64_t)r);
    atomic_store_explicit(&walk_stage, 1, memory_order_relaxed);
    while (atomic_load_explicit(&walk_stage, memory_order_relaxed) != 2) sched_yield();
    if (b != NULL) api_block_free(a, b);
    atomic_store_explicit(&walk_stage, 0, memory_order_relaxed);
  }
  return NULL;
}

static void case_debug_walk_then_free(void) {
  gpa_config_t config = GPA_CONFIG_DEFAULT;
  config.debug = (gpa_debug_config_t){.frames = 8, .checks = true};
  instance_setup(&config);
  atomic_store(&walk_stage, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, walk_then_free_thread, NULL) != 0) abort();
  for (int r = 0; r < WALK_THEN_FREE_ROUNDS; r++) {
    while (atomic_load_explicit(&walk_stage, memory_order_relaxed) != 1) sched_yield();
    TSAN_CHECK(gpa_live_count(&instance) == 1);
    atomic_store_explicit(&walk_stage, 2, memory_order_relaxed);
  }
  pthread_join(t, NULL);
  instance_teardown_expect(0);
}

int main(int argc, char **argv) {
  static const tsan_case_t cases[] = {
    {"api_producer_consumer", case_producer_consumer},
    {"api_single_thread_instance", case_single_thread_instance},
    {"api_thread_exit", case_thread_exit},
    {"api_trim_while_working", case_trim_while_working},
    {"api_debug_walks", case_debug_walks},
    {"api_debug_walk_then_free", case_debug_walk_then_free},
  };
  return tsan_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}

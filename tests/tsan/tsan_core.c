/*
 * tsan_core.c: the core under ThreadSanitizer, called through its internal
 * entry points (gpa_core_malloc and friends on the process instance): the
 * sanitizer's runtime keeps the names malloc and free for itself.
 *
 *   - blocks handed from producers to consumers that free them;
 *   - whole slabs filled, parked as full, and freed by another thread while
 *     the owner keeps allocating (remote frees into full slabs, the owner
 *     carving and rescuing slabs meanwhile);
 *   - threads exiting while another thread frees their blocks, and new
 *     threads adopting the exited threads' heaps;
 *   - large blocks grown and shrunk by realloc (pages moved by mremap)
 *     while other threads allocate and free large and small blocks;
 *   - instance_trim in a loop, with threads starting and exiting beside it,
 *     while others allocate and free.
 *
 * After each case every block is freed, and the instance's live count is
 * back where it started.
 */
#include "internal.h"
#include "tsan_support.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static size_t default_live_blocks(void) {
  size_t blocks, bytes;
  instance_count_live(&gpa_default_instance, &blocks, &bytes);
  return blocks;
}

/* ---- producers and consumers ------------------------------------------- */

#define PC_PRODUCERS 2
#define PC_CONSUMERS 2
#define PC_BLOCKS_PER_PRODUCER 4000

typedef struct pc_arg {
  tsan_queue_t *queue;
  uint64_t seed;
} pc_arg_t;

static void *pc_producer(void *p) {
  pc_arg_t *arg = p;
  uint64_t rng = arg->seed;
  for (size_t i = 0; i < PC_BLOCKS_PER_PRODUCER; i++) {
    size_t size = tsan_small_size(&rng);
    void *b = gpa_core_malloc(size);
    TSAN_CHECK(b != NULL);
    if (b == NULL) break;
    tsan_block_fill(b, size, arg->seed + i);
    tsan_queue_push(arg->queue, b);
    /* Some of its own traffic too, so its slabs change while remote frees
     * land in them. */
    void *own = gpa_core_malloc(size);
    TSAN_CHECK(own != NULL);
    gpa_core_free(own);
  }
  tsan_queue_close(arg->queue);
  return NULL;
}

static void *pc_consumer(void *p) {
  pc_arg_t *arg = p;
  for (void *b; (b = tsan_queue_pop(arg->queue)) != NULL;) {
    tsan_block_check(b);
    TSAN_CHECK(gpa_core_usable_size(b) >= ((tsan_block_t *)b)->size);
    gpa_core_free(b);
  }
  return NULL;
}

static void *pc_thread(void *p) {
  pc_arg_t *arg = p;
  return arg->seed != 0 ? pc_producer(p) : pc_consumer(p);
}

static void case_producer_consumer(void) {
  size_t live_before = default_live_blocks();
  tsan_queue_t queue;
  tsan_queue_init(&queue, PC_PRODUCERS);
  pc_arg_t args[PC_PRODUCERS + PC_CONSUMERS];
  for (size_t i = 0; i < PC_PRODUCERS + PC_CONSUMERS; i++)
    args[i] = (pc_arg_t){.queue = &queue, .seed = i < PC_PRODUCERS ? 1000 * (i + 1) : 0};
  tsan_run_threads(PC_PRODUCERS + PC_CONSUMERS, pc_thread, args, sizeof args[0]);
  tsan_queue_destroy(&queue);
  TSAN_CHECK(default_live_blocks() == live_before);
}

/* ---- remote frees into full slabs -------------------------------------- */

/* One class (48-byte blocks: 1365 to a 64 KiB slab); each round allocates
 * two slabs' worth, so at least one slab is filled and parked before the
 * round's blocks go to the freeing thread. */
#define FULL_BLOCK_SIZE 48
#define FULL_SLABS_PER_ROUND 2
#define FULL_ROUNDS 6

typedef struct full_shared {
  tsan_queue_t queue;
  pthread_barrier_t freed; /* the freer has freed every block */
} full_shared_t;

typedef struct full_arg {
  full_shared_t *shared;
  bool owner;
} full_arg_t;

static size_t own_heap_live_blocks(void) {
  size_t blocks = 0, bytes = 0;
  heap_count_live(gpa_tls_heap, &blocks, &bytes);
  return blocks;
}

static void full_owner(full_shared_t *sh) {
  /* The first block sets up the heap and tells the slab's size. */
  void *first = gpa_core_malloc(FULL_BLOCK_SIZE);
  TSAN_CHECK(first != NULL);
  if (first == NULL) {
    tsan_queue_close(&sh->queue);
    pthread_barrier_wait(&sh->freed);
    return;
  }
  size_t per_slab = slab_of(segment_of(first), first)->reserved;
  size_t live_at_start = own_heap_live_blocks();
  size_t per_round = FULL_SLABS_PER_ROUND * per_slab;
  void **round = calloc(per_round, sizeof *round);
  if (round == NULL) abort();
  for (size_t r = 0; r < FULL_ROUNDS; r++) {
    for (size_t i = 0; i < per_round; i++) {
      round[i] = gpa_core_malloc(FULL_BLOCK_SIZE);
      TSAN_CHECK(round[i] != NULL);
      if (round[i] != NULL) tsan_block_fill(round[i], FULL_BLOCK_SIZE, r * per_round + i);
    }
    /* Handed over only now: the slabs they fill are parked as full, and
     * the next round allocates (carving new blocks, rescuing slabs) while
     * the other thread frees these. */
    for (size_t i = 0; i < per_round; i++)
      if (round[i] != NULL) tsan_queue_push(&sh->queue, round[i]);
  }
  tsan_queue_close(&sh->queue);
  pthread_barrier_wait(&sh->freed);
  /* Every remote free is accounted for: the heap counts what it counted
   * before the rounds, and a fresh slab's worth of blocks on top. */
  TSAN_CHECK(own_heap_live_blocks() == live_at_start);
  for (size_t i = 0; i < per_slab; i++) round[i] = gpa_core_malloc(FULL_BLOCK_SIZE);
  TSAN_CHECK(own_heap_live_blocks() == live_at_start + per_slab);
  for (size_t i = 0; i < per_slab; i++) gpa_core_free(round[i]);
  TSAN_CHECK(own_heap_live_blocks() == live_at_start);
  free(round);
  gpa_core_free(first);
}

static void full_freer(full_shared_t *sh) {
  for (void *b; (b = tsan_queue_pop(&sh->queue)) != NULL;) {
    tsan_block_check(b);
    gpa_core_free(b);
  }
  pthread_barrier_wait(&sh->freed);
}

static void *full_thread(void *p) {
  full_arg_t *arg = p;
  if (arg->owner) full_owner(arg->shared);
  else full_freer(arg->shared);
  return NULL;
}

static void case_remote_free_full_slabs(void) {
  size_t live_before = default_live_blocks();
  full_shared_t sh;
  tsan_queue_init(&sh.queue, 1);
  pthread_barrier_init(&sh.freed, NULL, 2);
  full_arg_t args[2] = {{.shared = &sh, .owner = true}, {.shared = &sh, .owner = false}};
  tsan_run_threads(2, full_thread, args, sizeof args[0]);
  pthread_barrier_destroy(&sh.freed);
  tsan_queue_destroy(&sh.queue);
  TSAN_CHECK(default_live_blocks() == live_before);
}

/* ---- threads exiting while others free their blocks ----------------------- */

#define EXIT_WAVES 8
#define EXIT_THREADS_PER_WAVE 4
#define EXIT_BLOCKS_PER_THREAD 300

/* Half its blocks go to the freer, half it frees itself, then it exits:
 * its heap goes to the pool with remote frees still arriving. */
static void *exit_worker(void *p) {
  tsan_exit_arg_t *arg = p;
  uint64_t rng = arg->seed;
  void *kept[EXIT_BLOCKS_PER_THREAD / 2] = {0};
  for (size_t i = 0; i < EXIT_BLOCKS_PER_THREAD; i++) {
    size_t size = tsan_small_size(&rng);
    void *b = gpa_core_malloc(size);
    TSAN_CHECK(b != NULL);
    if (b == NULL) continue;
    tsan_block_fill(b, size, arg->seed + i);
    if (i % 2 == 0) tsan_queue_push(arg->queue, b);
    else kept[i / 2] = b;
  }
  for (size_t i = 0; i < EXIT_BLOCKS_PER_THREAD / 2; i++) {
    if (kept[i] == NULL) continue;
    tsan_block_check(kept[i]);
    gpa_core_free(kept[i]);
  }
  tsan_queue_close(arg->queue);
  return NULL;
}

static void *exit_freer(void *p) {
  tsan_queue_t *queue = p;
  for (void *b; (b = tsan_queue_pop(queue)) != NULL;) {
    tsan_block_check(b);
    gpa_core_free(b);
  }
  return NULL;
}

static void case_thread_exit_adoption(void) {
  size_t live_before = default_live_blocks();
  tsan_run_exit_waves(EXIT_WAVES, EXIT_THREADS_PER_WAVE, exit_worker, exit_freer);
  TSAN_CHECK(default_live_blocks() == live_before);
}

/* ---- large reallocs beside other threads' work ------------------------------ */

/* Above GPA_SMALL_MAX, so every block is a large one and realloc moves its
 * pages (mremap) instead of copying. */
#define LARGE_START (300 * KiB)
#define LARGE_STEP (320 * KiB)
#define LARGE_MAX (6 * MiB)
#define LARGE_GROWERS 3
#define LARGE_CYCLES 4
#define LARGE_CHURN_ROUNDS 300
/* A word is stamped every this many bytes: enough to see pages moved to the
 * wrong place, without writing (and instrumenting) megabytes. */
#define LARGE_STAMP_STRIDE (64 * KiB)

static uint64_t stamp_of(uint64_t seed, size_t offset) { return seed * 0x9E3779B97F4A7C15ull ^ offset; }

static void stamp(uint8_t *p, size_t from, size_t to, uint64_t seed) {
  for (size_t off = from; off + sizeof(uint64_t) <= to; off += LARGE_STAMP_STRIDE)
    *(uint64_t *)(p + off) = stamp_of(seed, off);
  *(uint64_t *)(p + to - sizeof(uint64_t)) = stamp_of(seed, to);
}

static void check_stamps(const uint8_t *p, size_t size, uint64_t seed) {
  for (size_t off = 0; off + sizeof(uint64_t) <= size - sizeof(uint64_t); off += LARGE_STAMP_STRIDE)
    TSAN_CHECK(*(const uint64_t *)(p + off) == stamp_of(seed, off));
}

/* The churners go on while any grower still moves its block. */
static atomic_int large_growers_running;

typedef struct large_arg {
  tsan_queue_t *queue; /* churners hand large blocks to each other */
  uint64_t seed;
  int role;            /* 0: grower, 1: churner that produces, 2: churner that frees */
} large_arg_t;

static void large_grower(uint64_t seed) {
  size_t size = LARGE_START;
  uint8_t *p = gpa_core_malloc(size);
  TSAN_CHECK(p != NULL);
  if (p == NULL) return;
  stamp(p, 0, size, seed);
  /* Up by steps, then down again, the stamps checked after every move. */
  for (int dir = 1, cycle = 0; cycle < LARGE_CYCLES; dir = -dir, cycle += dir > 0) {
    for (;;) {
      if (dir > 0 ? size + LARGE_STEP > LARGE_MAX : size < LARGE_START + LARGE_STEP) break;
      size_t next = dir > 0 ? size + LARGE_STEP : size - LARGE_STEP;
      uint8_t *q = gpa_core_realloc(p, next);
      TSAN_CHECK(q != NULL);
      if (q == NULL) break;
      p = q;
      size_t kept = next < size ? next : size;
      check_stamps(p, kept, seed);
      TSAN_CHECK(gpa_core_usable_size(p) >= next);
      size = next;
      stamp(p, 0, size, seed);
    }
  }
  gpa_core_free(p);
}

static void large_churner(large_arg_t *arg) {
  uint64_t rng = arg->seed;
  for (size_t i = 0; i < LARGE_CHURN_ROUNDS || atomic_load(&large_growers_running) != 0; i++) {
    size_t small = tsan_small_size(&rng);
    void *s = gpa_core_malloc(small);
    TSAN_CHECK(s != NULL);
    if (arg->role == 1) {
      size_t size = LARGE_START + (size_t)(rng % (2 * MiB));
      uint8_t *b = gpa_core_malloc(size);
      TSAN_CHECK(b != NULL);
      if (b != NULL) {
        tsan_block_fill(b, size, arg->seed + i);
        tsan_queue_push(arg->queue, b);
      }
    } else {
      void *b = tsan_queue_pop(arg->queue);
      if (b != NULL) {
        tsan_block_check(b);
        gpa_core_free(b);
      }
    }
    gpa_core_free(s);
  }
  if (arg->role == 1) tsan_queue_close(arg->queue);
  else
    for (void *b; (b = tsan_queue_pop(arg->queue)) != NULL;) gpa_core_free(b);
}

static void *large_thread(void *p) {
  large_arg_t *arg = p;
  if (arg->role == 0) {
    large_grower(arg->seed);
    atomic_fetch_sub(&large_growers_running, 1);
  } else {
    large_churner(arg);
  }
  return NULL;
}

static void case_large_realloc(void) {
  size_t live_before = default_live_blocks();
  tsan_queue_t queue;
  tsan_queue_init(&queue, 1);
  atomic_store(&large_growers_running, LARGE_GROWERS);
  large_arg_t args[LARGE_GROWERS + 2];
  for (size_t i = 0; i < LARGE_GROWERS; i++) args[i] = (large_arg_t){.seed = 7 + i, .role = 0};
  args[LARGE_GROWERS] = (large_arg_t){.queue = &queue, .seed = 77, .role = 1};
  args[LARGE_GROWERS + 1] = (large_arg_t){.queue = &queue, .seed = 777, .role = 2};
  tsan_run_threads(LARGE_GROWERS + 2, large_thread, args, sizeof args[0]);
  tsan_queue_destroy(&queue);
  TSAN_CHECK(default_live_blocks() == live_before);
}

/* ---- trim while others work ---------------------------------------------------- */

#define TRIM_ROUNDS 60
#define TRIM_WORKER_BLOCKS 3000

typedef struct trim_arg {
  tsan_queue_t *queue;
  uint64_t seed;
  int role; /* 0: producer, 1: consumer, 2: trimmer */
} trim_arg_t;

/* A thread that allocates, frees some of its blocks and exits, leaving its
 * heap to the pool that trim collects. */
static void *trim_short_lived(void *p) {
  uint64_t rng = (uint64_t)(uintptr_t)p;
  void *blocks[32];
  for (size_t i = 0; i < 32; i++) {
    size_t size = i % 8 == 0 ? LARGE_START : tsan_small_size(&rng);
    blocks[i] = gpa_core_malloc(size);
    TSAN_CHECK(blocks[i] != NULL);
  }
  for (size_t i = 0; i < 32; i++) gpa_core_free(blocks[i]);
  return NULL;
}

static void trim_trimmer(void) {
  for (size_t r = 0; r < TRIM_ROUNDS; r++) {
    pthread_t t;
    if (pthread_create(&t, NULL, trim_short_lived, (void *)(uintptr_t)(r + 1)) != 0) abort();
    (void)instance_trim(&gpa_default_instance);
    pthread_join(t, NULL);
  }
}

static void *trim_thread(void *p) {
  trim_arg_t *arg = p;
  if (arg->role == 2) {
    trim_trimmer();
  } else if (arg->role == 0) {
    uint64_t rng = arg->seed;
    for (size_t i = 0; i < TRIM_WORKER_BLOCKS; i++) {
      size_t size = i % 100 == 0 ? LARGE_START : tsan_small_size(&rng);
      void *b = gpa_core_malloc(size);
      TSAN_CHECK(b != NULL);
      if (b == NULL) continue;
      tsan_block_fill(b, size, arg->seed + i);
      tsan_queue_push(arg->queue, b);
    }
    tsan_queue_close(arg->queue);
  } else {
    for (void *b; (b = tsan_queue_pop(arg->queue)) != NULL;) {
      tsan_block_check(b);
      gpa_core_free(b);
    }
  }
  return NULL;
}

static void case_trim_while_working(void) {
  size_t live_before = default_live_blocks();
  tsan_queue_t queue;
  tsan_queue_init(&queue, 2);
  trim_arg_t args[] = {
    {.queue = &queue, .seed = 11, .role = 0},
    {.queue = &queue, .seed = 22, .role = 0},
    {.queue = &queue, .role = 1},
    {.role = 2},
  };
  tsan_run_threads(sizeof args / sizeof args[0], trim_thread, args, sizeof args[0]);
  tsan_queue_destroy(&queue);
  TSAN_CHECK(default_live_blocks() == live_before);
}

int main(int argc, char **argv) {
  static const tsan_case_t cases[] = {
    {"core_producer_consumer", case_producer_consumer},
    {"core_remote_free_full_slabs", case_remote_free_full_slabs},
    {"core_thread_exit_adoption", case_thread_exit_adoption},
    {"core_large_realloc", case_large_realloc},
    {"core_trim_while_working", case_trim_while_working},
  };
  return tsan_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}

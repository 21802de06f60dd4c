/*
 * explicit_api: the explicit API's cost against malloc, measured side by
 * side in one process.  Linked with libgpa, so `malloc` here is libgpa's
 * process instance: the figures are what calling through a gpa_allocator_t
 * (an indirect call, the state check and the per-thread heap lookup) adds,
 * and what an arena saves.
 *
 * Workloads, each run REPS times with the variants interleaved (A B C D,
 * rotated every repetition), medians reported with their ratios:
 *   pairs   alloc + touch + free of one block, sizes cycling 16..256 bytes,
 *           one block of each size held live throughout
 *   window  1024 live blocks of 16..512 bytes, a random one replaced per step
 *   arena10k, arena100k
 *           10000 or 100000 small objects (16..64 bytes: about 400 KiB,
 *           cache-resident, or 4 MiB) allocated (one byte of each written),
 *           then all released (malloc: free each; arena: one reset that
 *           keeps the capacity), in rounds: the allocator's work per object
 * Variants: malloc/free (libgpa's); the C library's own malloc/free, looked
 * up in libc.so.6; a thread-safe gpa_t; a single-thread gpa_t
 * (config.thread_safe = false); for the arena rows, a gpa_arena_t over the
 * thread-safe gpa_t.
 *
 * usage: explicit_api [scale [reps]]   (scale multiplies the step counts)
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time:
 * on a shared machine the time the CPU was taken away (steal) would
 * otherwise land on whichever variant was running.
 *
 * stdout: a table: workload, variant, median ns per operation, ratio to
 * libgpa malloc's median.  A checksum line makes sure no work was optimised away.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <gpa.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../bench_support.h"

#define PAIR_STEPS 20000000L
#define PAIR_SIZES 16 /* 16, 32, ..., 256 bytes */
#define WINDOW_STEPS 10000000L
#define WINDOW_SLOTS 1024
#define ARENA_OBJECTS_MAX 100000L
#define ARENA_OBJECTS_SMALL 10000L /* about 400 KiB a round: cache-resident */
#define ARENA_ROUNDS 100L
#define MAX_REPS 31

enum variant { V_MALLOC, V_GLIBC, V_GPA, V_GPA_SINGLE, V_ARENA, VARIANTS };
static const char *variant_names[VARIANTS] = {"malloc (libgpa)", "glibc malloc", "gpa_t", "gpa_t single-thread",
                                              "arena over gpa_t"};

/* The C library's own malloc and free, found in libc.so.6 itself: in this
 * process `malloc` is libgpa's. */
static void *(*glibc_malloc)(size_t);
static void (*glibc_free)(void *);

static gpa_allocator_t allocators[VARIANTS];
static uint64_t checksum;

static void usage(void) {
  fprintf(stderr, "usage: explicit_api [scale [reps]]\n");
  exit(2);
}

static inline void *var_alloc(enum variant v, size_t size) {
  if (v == V_MALLOC) return malloc(size);
  if (v == V_GLIBC) return glibc_malloc(size);
  return gpa_alloc(allocators[v], unsigned char, size);
}

static inline void var_free(enum variant v, void *p, size_t size) {
  if (v == V_MALLOC) {
    free(p);
    return;
  }
  if (v == V_GLIBC) {
    glibc_free(p);
    return;
  }
  gpa_free(allocators[v], (unsigned char *)p, size);
}

/* Each workload's loop is written once as a macro over ALLOC(size) and
 * FREE(p, size) and expanded for each variant, so no variant pays for
 * choosing among them inside the loop (what a program calling one
 * allocator would do). */
#define FOR_EACH_VARIANT(v, LOOP)                                             \
  do {                                                                        \
    gpa_allocator_t a_ = allocators[v];                                       \
    switch (v) {                                                              \
    case V_MALLOC: LOOP(malloc(size_), free(p_)); break;                      \
    case V_GLIBC: LOOP(glibc_malloc(size_), glibc_free(p_)); break;           \
    default:                                                                  \
      LOOP(gpa_alloc(a_, unsigned char, size_), gpa_free(a_, (unsigned char *)p_, size_)); \
      break;                                                                  \
    }                                                                         \
  } while (0)

#define PAIRS_LOOP(ALLOC, FREE)                                               \
  for (long i = 0; i < steps; i++) {                                          \
    size_t size_ = 16 + (size_t)(i % PAIR_SIZES) * 16;                        \
    unsigned char *p_ = (ALLOC);                                              \
    if (p_ == NULL) bench_die();                                              \
    p_[0] = (unsigned char)i;                                                 \
    sum += p_[0];                                                             \
    FREE;                                                                     \
  }

static double run_pairs(enum variant v, long steps) {
  /* One block of each size stays live throughout, as in a program whose
   * heap holds other blocks: without it every free would empty its slab,
   * a path no steady state takes (bench/icount holds blocks the same way). */
  void *held[PAIR_SIZES];
  for (size_t k = 0; k < PAIR_SIZES; k++)
    if ((held[k] = var_alloc(v, 16 + k * 16)) == NULL) bench_die();
  uint64_t sum = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  FOR_EACH_VARIANT(v, PAIRS_LOOP);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  for (size_t k = 0; k < PAIR_SIZES; k++) var_free(v, held[k], 16 + k * 16);
  checksum += sum;
  return elapsed_ns(&t0, &t1) / (double)steps;
}

#define WINDOW_LOOP(ALLOC, FREE)                                              \
  for (long i = 0; i < steps; i++) {                                          \
    uint64_t r = xorshift64s(&rng);                                           \
    size_t k = r % WINDOW_SLOTS;                                              \
    if (slots[k] != NULL) {                                                   \
      unsigned char *p_ = slots[k];                                           \
      size_t size_ = sizes[k];                                                \
      sum += p_[size_ - 1];                                                   \
      FREE;                                                                   \
    }                                                                         \
    size_t size_ = sizes[k] = 16 + (size_t)(r >> 32) % 497;                   \
    unsigned char *p_ = slots[k] = (ALLOC);                                   \
    if (p_ == NULL) bench_die();                                              \
    p_[size_ - 1] = (unsigned char)r;                                         \
  }

static double run_window(enum variant v, long steps) {
  static unsigned char *slots[WINDOW_SLOTS];
  static size_t sizes[WINDOW_SLOTS];
  uint64_t rng = 0x77696e646f77ULL;
  uint64_t sum = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  FOR_EACH_VARIANT(v, WINDOW_LOOP);
  for (size_t k = 0; k < WINDOW_SLOTS; k++) {
    if (slots[k] != NULL) var_free(v, slots[k], sizes[k]);
    slots[k] = NULL;
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  checksum += sum;
  return elapsed_ns(&t0, &t1) / (double)steps;
}

/* Small objects that die together: malloc frees each one, the arena drops
 * them all with one reset (keeping its capacity for the next round). */
static long arena_objects;

/* One round's allocations, with ALLOC(size) as the allocation: the loop is
 * written out for each variant so none pays for choosing among them. */
#define ARENA_FILL(ALLOC)                                \
  for (long i = 0; i < arena_objects; i++) {             \
    size_t size = 16 + (size_t)(i & 3) * 16;             \
    unsigned char *p = (ALLOC);                          \
    if (p == NULL) bench_die();                          \
    p[0] = (unsigned char)i;                             \
    sum += p[0];                                         \
    objects[i] = p;                                      \
  }

static double run_arena(enum variant v, long rounds) {
  static void *objects[ARENA_OBJECTS_MAX];
  gpa_arena_t arena;
  gpa_arena_init(&arena, allocators[V_GPA]);
  gpa_allocator_t a = gpa_arena_allocator(&arena);
  uint64_t sum = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  for (long r = 0; r < rounds; r++) {
    switch (v) {
    case V_MALLOC:
      ARENA_FILL(malloc(size));
      for (long i = 0; i < arena_objects; i++) free(objects[i]);
      break;
    case V_GLIBC:
      ARENA_FILL(glibc_malloc(size));
      for (long i = 0; i < arena_objects; i++) glibc_free(objects[i]);
      break;
    default:
      ARENA_FILL(gpa_alloc(a, unsigned char, size));
      gpa_arena_reset(&arena, GPA_ARENA_RETAIN_CAPACITY, 0);
      break;
    }
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  gpa_arena_deinit(&arena);
  checksum += sum;
  return elapsed_ns(&t0, &t1) / (double)(rounds * arena_objects);
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *xs, int n) {
  qsort(xs, (size_t)n, sizeof *xs, compare_double);
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

typedef double (*workload_fn)(enum variant v, long steps);

static void measure(const char *name, workload_fn fn, long steps, const enum variant *vars, int nvars, int reps) {
  double samples[VARIANTS][MAX_REPS];
  for (int r = 0; r < reps; r++)
    for (int i = 0; i < nvars; i++) {
      enum variant v = vars[(i + r) % nvars];
      samples[v][r] = fn(v, steps);
    }
  double base = median(samples[V_MALLOC], reps);
  for (int i = 0; i < nvars; i++) {
    enum variant v = vars[i];
    double m = v == V_MALLOC ? base : median(samples[v], reps);
    printf("%-9s %-22s %8.2f ns/op  %5.2fx malloc\n", name, variant_names[v], m, m / base);
  }
}

int main(int argc, char **argv) {
  double scale = argc > 1 ? strtod(argv[1], NULL) : 1.0;
  int reps = argc > 2 ? (int)parse_long(argv[2], 1, MAX_REPS, usage) : 7;
  if (!(scale > 0)) usage();

  gpa_t gpa, single;
  gpa_config_t single_config = {.thread_safe = false};
  if (gpa_init(&gpa, NULL) != 0 || gpa_init(&single, &single_config) != 0) bench_die();
  allocators[V_GPA] = gpa_allocator(&gpa);
  allocators[V_GPA_SINGLE] = gpa_allocator(&single);

  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (libc == NULL || (glibc_malloc = (void *(*)(size_t))dlsym(libc, "malloc")) == NULL ||
      (glibc_free = (void (*)(void *))dlsym(libc, "free")) == NULL) {
    fprintf(stderr, "explicit_api: cannot find the C library's malloc\n");
    bench_die();
  }
  const enum variant heap_vars[] = {V_MALLOC, V_GLIBC, V_GPA, V_GPA_SINGLE};
  const enum variant arena_vars[] = {V_MALLOC, V_GLIBC, V_ARENA};
  printf("explicit_api: medians of %d interleaved runs, scale %g\n", reps, scale);
  measure("pairs", run_pairs, (long)(PAIR_STEPS * scale), heap_vars, 4, reps);
  measure("window", run_window, (long)(WINDOW_STEPS * scale), heap_vars, 4, reps);
  long rounds = (long)(ARENA_ROUNDS * scale);
  arena_objects = ARENA_OBJECTS_SMALL;
  measure("arena10k", run_arena, rounds > 0 ? 10 * rounds : 10, arena_vars, 3, reps);
  arena_objects = ARENA_OBJECTS_MAX;
  measure("arena100k", run_arena, rounds > 0 ? rounds : 1, arena_vars, 3, reps);
  printf("checksum=%llu\n", (unsigned long long)checksum);

  if (gpa_deinit(&gpa) != GPA_OK || gpa_deinit(&single) != GPA_OK) {
    fprintf(stderr, "explicit_api: blocks leaked\n");
    return 1;
  }
  return 0;
}

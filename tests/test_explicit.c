/*
 * test_explicit.c: the general-purpose allocator through gpa.h's explicit
 * API: gpa_init/gpa_deinit and what deinit reports, instances that never
 * share blocks, memory handed back at deinit, thread safety and the
 * single-thread configuration, resize and remap, the process instance, and
 * misuse of the state or of another instance's blocks (each in a forked
 * child, report and abort checked).
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gpa.h"
#include "gpa_testing.h"
#include "child_support.h"
#include "test_support.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

static __attribute__((noinline)) void *launder(void *p) {
  void *volatile v = p;
  return v;
}

/* ---- lifetime and leaks ------------------------------------------------- */

static void test_init_deinit_clean(void **state) {
  (void)state;
  gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  gpa_allocator_t a = gpa_allocator(&gpa);
  assert_ptr_equal(a.ctx, &gpa);
  int *xs = gpa_alloc(a, int, 100);
  assert_non_null(xs);
  for (int i = 0; i < 100; i++) xs[i] = i;
  assert_int_equal(gpa_live_count(&gpa), 1);
  gpa_free(a, xs, 100);
  assert_int_equal(gpa_live_count(&gpa), 0);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
  assert_int_equal(gpa.leaked_blocks, 0);
}

static void test_deinit_reports_leaks(void **state) {
  (void)state;
  gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  gpa_allocator_t a = gpa_allocator(&gpa);
  void *small = gpa_alloc(a, char, 24);
  void *medium = gpa_alloc(a, char, 5000);
  void *large = gpa_alloc(a, char, 3 * MiB);
  void *over = gpa_alloc_aligned(a, char, 100, 8 * MiB);
  void *freed = gpa_alloc(a, char, 64);
  assert_non_null(small);
  assert_non_null(medium);
  assert_non_null(large);
  assert_non_null(over);
  assert_int_equal((uintptr_t)over % (8 * MiB), 0);
  gpa_free(a, freed, 64);
  assert_int_equal(gpa_live_count(&gpa), 4);
  assert_true(gpa_live_bytes(&gpa) >= 24 + 5000 + 3 * MiB + 100);
  assert_int_equal(gpa_deinit(&gpa), GPA_LEAK);
  assert_int_equal(gpa.leaked_blocks, 4);
  assert_true(gpa.leaked_bytes >= 24 + 5000 + 3 * MiB + 100);
}

/* A job for a thread: blocks to free, or to allocate, through an allocator. */
typedef struct job {
  gpa_allocator_t a;
  void **blocks;
  size_t count;
  size_t size;
} job_t;

static void *free_blocks(void *arg) {
  job_t *job = arg;
  for (size_t i = 0; i < job->count; i++) gpa_raw_free(job->a, job->blocks[i], job->size, 0);
  return NULL;
}

static void *alloc_blocks(void *arg) {
  job_t *job = arg;
  for (size_t i = 0; i < job->count; i++) {
    job->blocks[i] = gpa_raw_alloc(job->a, job->size, 0);
    if (job->blocks[i] != NULL) memset(job->blocks[i], 0x5c, job->size);
  }
  return NULL;
}

static void test_remote_frees_are_not_leaks(void **state) {
  (void)state;
  /* Blocks freed by another thread wait on their slab's remote list until
   * the owner collects them; deinit must not count them as live. */
  gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  enum { N = 1000 };
  static void *blocks[N];
  job_t job = { gpa_allocator(&gpa), blocks, N, 48 };
  for (int i = 0; i < N; i++) assert_non_null(blocks[i] = gpa_raw_alloc(job.a, 48, 0));
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, free_blocks, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(gpa_live_count(&gpa), 0);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

/* Blocks a thread allocated and left behind when it exited belong to the
 * instance: another thread frees them, and deinit finds nothing live. */
static void test_blocks_outlive_their_thread(void **state) {
  (void)state;
  gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  enum { N = 500 };
  static void *blocks[N];
  job_t job = { gpa_allocator(&gpa), blocks, N, 200 };
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, alloc_blocks, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(gpa_live_count(&gpa), N);
  for (int i = 0; i < N; i++) {
    assert_non_null(blocks[i]);
    assert_int_equal(((unsigned char *)blocks[i])[199], 0x5c);
    assert_true(gpa_owns(&gpa, blocks[i]));
  }
  free_blocks(&job);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

/* ---- independence and memory return ------------------------------------ */

static void test_instances_never_share_blocks(void **state) {
  (void)state;
  gpa_t one, two;
  assert_int_equal(gpa_init(&one, NULL), 0);
  assert_int_equal(gpa_init(&two, NULL), 0);
  gpa_allocator_t a = gpa_allocator(&one), b = gpa_allocator(&two);
  enum { N = 256 };
  void *from_one[N], *from_two[N];
  for (int i = 0; i < N; i++) {
    size_t size = 16 + (size_t)i * 40;
    from_one[i] = gpa_raw_alloc(a, size, 0);
    from_two[i] = gpa_raw_alloc(b, size, 0);
    assert_non_null(from_one[i]);
    assert_non_null(from_two[i]);
    assert_true(gpa_owns(&one, from_one[i]) && !gpa_owns(&two, from_one[i]));
    assert_true(gpa_owns(&two, from_two[i]) && !gpa_owns(&one, from_two[i]));
  }
  /* Memory one instance frees is not handed out by the other. */
  for (int i = 0; i < N; i++) gpa_raw_free(a, from_one[i], 16 + (size_t)i * 40, 0);
  for (int i = 0; i < N; i++) {
    void *p = gpa_raw_alloc(b, 16 + (size_t)i * 40, 0);
    for (int j = 0; j < N; j++) assert_ptr_not_equal(p, from_one[j]);
    gpa_raw_free(b, p, 16 + (size_t)i * 40, 0);
  }
  for (int i = 0; i < N; i++) gpa_raw_free(b, from_two[i], 16 + (size_t)i * 40, 0);
  /* And neither holds malloc's blocks. */
  void *m = malloc(100);
  assert_false(gpa_owns(&one, m));
  assert_true(gpa_owns(gpa_default(), m));
  free(m);
  assert_int_equal(gpa_deinit(&one), GPA_OK);
  assert_int_equal(gpa_deinit(&two), GPA_OK);
}

static void test_deinit_returns_memory(void **state) {
  (void)state;
  gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  gpa_allocator_t a = gpa_allocator(&gpa);
  size_t before = rss_bytes();
  /* 64 MiB in small blocks and large ones, touched, and never freed. */
  for (int i = 0; i < 64 * 1024; i++) memset(gpa_raw_alloc(a, 512, 0), 1, 512);
  for (int i = 0; i < 8; i++) memset(gpa_raw_alloc(a, 4 * MiB, 0), 1, 4 * MiB);
  size_t during = rss_bytes();
  assert_true(during >= before + 56 * MiB);
  assert_int_equal(gpa_deinit(&gpa), GPA_LEAK);
  assert_int_equal(gpa.leaked_blocks, 64 * 1024 + 8);
  size_t after = rss_bytes();
  print_message("rss: before %zu KiB, during %zu KiB, after deinit %zu KiB\n", before / KiB, during / KiB,
                after / KiB);
  assert_true(after < before + 2 * MiB);
}

/* ---- threads ------------------------------------------------------------- */

typedef struct churn {
  gpa_allocator_t a;
  unsigned seed;
  void **shared;       /* blocks handed between threads */
  pthread_mutex_t *lock;
} churn_t;

enum { CHURN_SLOTS = 512, CHURN_STEPS = 40000 };

static void *churn_thread(void *arg) {
  churn_t *c = arg;
  void *own[64] = { 0 };
  size_t own_size[64] = { 0 };
  unsigned x = c->seed;
  for (int step = 0; step < CHURN_STEPS; step++) {
    x = x * 1103515245u + 12345u;
    unsigned k = (x >> 8) % 64;
    if (own[k] != NULL) {
      assert_int_equal(((unsigned char *)own[k])[own_size[k] - 1], (unsigned char)own_size[k]);
      gpa_raw_free(c->a, own[k], own_size[k], 0);
    }
    own_size[k] = 1 + (x >> 12) % (k < 60 ? 2000 : 300000);
    own[k] = gpa_raw_alloc(c->a, own_size[k], 0);
    assert_non_null(own[k]);
    ((unsigned char *)own[k])[own_size[k] - 1] = (unsigned char)own_size[k];
    if (step % 16 == 0) {
      /* Swap a 64-byte block with the shared pool: frees from other threads. */
      unsigned slot = (x >> 4) % CHURN_SLOTS;
      void *mine = gpa_raw_alloc(c->a, 64, 0);
      assert_non_null(mine);
      pthread_mutex_lock(c->lock);
      void *theirs = c->shared[slot];
      c->shared[slot] = mine;
      pthread_mutex_unlock(c->lock);
      if (theirs != NULL) gpa_raw_free(c->a, theirs, 64, 0);
    }
  }
  for (int k = 0; k < 64; k++)
    if (own[k] != NULL) gpa_raw_free(c->a, own[k], own_size[k], 0);
  return NULL;
}

static void test_threads_share_an_instance(void **state) {
  (void)state;
  gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  static void *shared[CHURN_SLOTS];
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  enum { T = 4 };
  pthread_t threads[T];
  churn_t jobs[T];
  for (int i = 0; i < T; i++) {
    jobs[i] = (churn_t){ gpa_allocator(&gpa), 7u + (unsigned)i * 131u, shared, &lock };
    assert_int_equal(pthread_create(&threads[i], NULL, churn_thread, &jobs[i]), 0);
  }
  for (int i = 0; i < T; i++) assert_int_equal(pthread_join(threads[i], NULL), 0);
  gpa_allocator_t a = gpa_allocator(&gpa);
  for (int i = 0; i < CHURN_SLOTS; i++)
    if (shared[i] != NULL) gpa_raw_free(a, shared[i], 64, 0);
  assert_int_equal(gpa_live_count(&gpa), 0);
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

static void test_single_thread_instance(void **state) {
  (void)state;
  gpa_t gpa;
  gpa_config_t config = { .thread_safe = false };
  assert_int_equal(gpa_init(&gpa, &config), 0);
  assert_false(gpa.config.thread_safe);
  gpa_allocator_t a = gpa_allocator(&gpa);
  void *blocks[1000];
  for (int i = 0; i < 1000; i++) {
    blocks[i] = gpa_raw_alloc(a, (size_t)i * 7 + 1, 0);
    assert_non_null(blocks[i]);
    memset(blocks[i], i & 0xff, (size_t)i * 7 + 1);
  }
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(((unsigned char *)blocks[i])[(size_t)i * 7], i & 0xff);
    gpa_raw_free(a, blocks[i], (size_t)i * 7 + 1, 0);
  }
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

/* One thread using more instances than its table of heaps has slots: the
 * instances take turns, and every block still goes back where it belongs. */
static void test_many_instances_on_one_thread(void **state) {
  (void)state;
  enum { N = 20, ROUNDS = 50 };
  gpa_t gpas[N];
  void *held[N][ROUNDS];
  for (int i = 0; i < N; i++) assert_int_equal(gpa_init(&gpas[i], NULL), 0);
  for (int r = 0; r < ROUNDS; r++)
    for (int i = 0; i < N; i++) {
      held[i][r] = gpa_raw_alloc(gpa_allocator(&gpas[i]), 32 + (size_t)r, 0);
      assert_true(gpa_owns(&gpas[i], held[i][r]));
    }
  for (int r = 0; r < ROUNDS; r++)
    for (int i = 0; i < N; i++) gpa_raw_free(gpa_allocator(&gpas[i]), held[i][r], 32 + (size_t)r, 0);
  for (int i = 0; i < N; i++) assert_int_equal(gpa_deinit(&gpas[i]), GPA_OK);
}

static void *use_and_exit_late(void *arg) {
  gpa_t *gpa = arg;
  void *p = gpa_raw_alloc(gpa_allocator(gpa), 100, 0);
  gpa_raw_free(gpa_allocator(gpa), p, 100, 0);
  return NULL;
}

/* A thread that used an instance may exit after the instance is gone: its
 * exit must not touch the released heap. */
static void test_thread_exits_after_deinit(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    gpa_t gpa;
    assert_int_equal(gpa_init(&gpa, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, use_and_exit_late, &gpa), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(gpa_deinit(&gpa), GPA_OK);
  }
}

/* ---- the operations ------------------------------------------------------ */

static void test_resize_and_remap(void **state) {
  gpa_allocator_t a = gpa_testing_allocator(state);
  /* A 20-byte request gets a 32-byte block: resize within it works in place. */
  char *p = gpa_raw_alloc(a, 20, 0);
  assert_true(gpa_raw_resize(a, p, 20, 0, 32));
  assert_true(gpa_raw_resize(a, p, 32, 0, 8));
  assert_false(gpa_raw_resize(a, p, 8, 0, 4096));
  assert_null(gpa_raw_remap(a, p, 8, 0, 4096)); /* a small block is copied by the caller */
  gpa_raw_free(a, p, 8, 0);
  /* A large block grows by moving pages; its bytes come along. */
  unsigned char *big = gpa_raw_alloc(a, 2 * MiB, 0);
  for (size_t i = 0; i < 2 * MiB; i += 4096) big[i] = (unsigned char)(i >> 12);
  unsigned char *bigger = gpa_raw_remap(a, big, 2 * MiB, 0, 64 * MiB);
  assert_non_null(bigger);
  for (size_t i = 0; i < 2 * MiB; i += 4096) assert_int_equal(bigger[i], (unsigned char)(i >> 12));
  bigger[64 * MiB - 1] = 1;
  gpa_raw_free(a, bigger, 64 * MiB, 0);
  /* Typed realloc through the instance. */
  int *xs = gpa_alloc(a, int, 4);
  for (int i = 0; i < 4; i++) xs[i] = i * 10;
  xs = gpa_realloc(a, xs, 4, 100000);
  assert_non_null(xs);
  for (int i = 0; i < 4; i++) assert_int_equal(xs[i], i * 10);
  gpa_free(a, xs, 100000);
}

static void test_alignment(void **state) {
  gpa_allocator_t a = gpa_testing_allocator(state);
  for (size_t align = 1; align <= 16 * MiB; align *= 2) {
    char *p = gpa_alloc_aligned(a, char, 100, align);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % align, 0);
    memset(p, 7, 100);
    gpa_free_aligned(a, p, 100, align);
  }
  errno = 0;
  assert_null(gpa_raw_alloc(a, 10, 24));
  assert_int_equal(errno, EINVAL);
}

static void test_zero_length_is_a_real_block(void **state) {
  gpa_allocator_t a = gpa_testing_allocator(state);
  char *p = gpa_raw_alloc(a, 0, 0), *q = gpa_raw_alloc(a, 0, 0);
  assert_non_null(p);
  assert_non_null(q);
  assert_ptr_not_equal(p, q);
  gpa_raw_free(a, p, 0, 0);
  gpa_raw_free(a, q, 0, 0);
}

static void test_default_instance_is_malloc(void **state) {
  (void)state;
  gpa_allocator_t a = gpa_allocator(gpa_default());
  char *p = malloc(100);
  gpa_raw_free(a, p, 100, 0); /* malloc's block, freed through the value */
  char *q = gpa_raw_alloc(a, 300, 0);
  assert_non_null(q);
  assert_true(malloc_usable_size(q) >= 300);
  free(q); /* and the other way round */
  char *r = gpa_alloc_aligned(a, char, 10, 4096);
  assert_int_equal((uintptr_t)r % 4096, 0);
  gpa_free_aligned(a, r, 10, 4096);
  assert_int_equal(gpa_deinit(gpa_default()), GPA_OK); /* does nothing */
  free(malloc(10));
}

static void *default_value_worker(void *arg) {
  (void)arg;
  gpa_allocator_t a = gpa_allocator(gpa_default());
  for (int i = 0; i < 2000; i++) {
    char *p = gpa_alloc(a, char, 24 + (size_t)(i % 200));
    assert_non_null(p);
    p[0] = (char)i;
    if (i % 2) gpa_free(a, p, 24 + (size_t)(i % 200)); else free(p);
  }
  return NULL;
}

/* Threads that allocate through gpa_default() and exit, one after another:
 * each exit hands the thread's malloc heap to the pool, and the next thread
 * that adopts it must not find it still named in a stale slot. */
static void test_default_instance_across_threads(void **state) {
  (void)state;
  for (int round = 0; round < 50; round++) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, default_value_worker, NULL), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
  }
  default_value_worker(NULL);
}

static void test_out_of_memory_is_null(void **state) {
  gpa_allocator_t a = gpa_testing_allocator(state);
  errno = 0;
  assert_null(gpa_raw_alloc(a, SIZE_MAX - 4096, 0));
  assert_int_equal(errno, ENOMEM);
  assert_null(gpa_alloc(a, uint64_t, SIZE_MAX / 4));
  assert_null(gpa_raw_alloc(a, (size_t)1 << 47, 0) /* more than the address space allows */ );
}

/* ---- the testing allocator ------------------------------------------------ */

static void leaky_test(void **state) {
  gpa_allocator_t a = gpa_testing_allocator(state);
  assert_non_null(gpa_raw_alloc(a, 96, 0));
}

static void run_leaky_group(void *arg) {
  (void)arg;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(leaky_test, gpa_testing_setup, gpa_testing_teardown),
  };
  _exit(cmocka_run_group_tests_name("leaky", tests, NULL, NULL) == 0 ? 0 : 3);
}

static void test_testing_allocator_fails_a_leaking_test(void **state) {
  (void)state;
  gpa_t gpa;
  assert_int_equal(gpa_testing_init(&gpa), 0);
  assert_non_null(gpa_raw_alloc(gpa_allocator(&gpa), 96, 0));
  assert_false(gpa_testing_check(&gpa, "direct"));
  assert_int_equal(gpa.leaked_blocks, 1);
  /* Through the cmocka fixtures: the group fails and says why. */
  outcome_t out;
  run_child(run_leaky_group, NULL, &out);
  print_message("child stderr: %s", out.err);
  assert_true(WIFEXITED(out.status));
  assert_int_equal(WEXITSTATUS(out.status), 3);
  assert_non_null(strstr(out.err, "gpa: test: leaked 1 allocation(s)"));
}

/* ---- misuse (forked children) ---------------------------------------------- */

static void use_after_deinit(void *arg) {
  gpa_t *gpa = arg;
  gpa_allocator_t a = gpa_allocator(gpa);
  gpa_deinit(gpa);
  gpa_raw_alloc(a, 10, 0);
}

static void use_never_initialised(void *arg) {
  gpa_t *gpa = arg;
  memset(gpa, 0xab, sizeof *gpa);
  gpa_allocator_t a = { gpa, gpa_allocator(gpa_default()).vtable };
  gpa_raw_alloc(a, 10, 0);
}

static void use_zeroed(void *arg) {
  gpa_t *gpa = arg;
  memset(gpa, 0, sizeof *gpa);
  gpa_allocator_t a = { gpa, gpa_allocator(gpa_default()).vtable };
  char *p = gpa_alloc(a, char, 10);
  gpa_free(a, p, 10);
}

static void deinit_twice(void *arg) {
  gpa_t *gpa = arg;
  gpa_deinit(gpa);
  gpa_deinit(gpa);
}

static void test_use_after_deinit_is_caught(void **state) {
  (void)state;
  static gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  outcome_t out;
  run_child(use_after_deinit, &gpa, &out);
  assert_reported(&out, &gpa);
  assert_non_null(strstr(out.err, "gpa: allocator used after gpa_deinit (state at "));
  run_child(deinit_twice, &gpa, &out);
  assert_reported(&out, &gpa);
  assert_non_null(strstr(out.err, "after gpa_deinit"));
  static gpa_t garbage;
  run_child(use_never_initialised, &garbage, &out);
  assert_reported(&out, &garbage);
  assert_non_null(strstr(out.err, "before gpa_init"));
  run_child(use_zeroed, &garbage, &out); /* through the typed helpers' direct path */
  assert_reported(&out, &garbage);
  assert_non_null(strstr(out.err, "before gpa_init"));
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

typedef struct cross {
  gpa_t *owner, *other;
  void *block;
  size_t len;
} cross_t;

static void free_cross(void *arg) {
  cross_t *c = arg;
  gpa_raw_free(gpa_allocator(c->other), launder(c->block), c->len, 0);
}

static void test_free_through_another_instance_is_caught(void **state) {
  (void)state;
  gpa_t one, two;
  assert_int_equal(gpa_init(&one, NULL), 0);
  assert_int_equal(gpa_init(&two, NULL), 0);
  size_t sizes[] = { 40, 9000, 2 * MiB };
  for (size_t i = 0; i < 3; i++) {
    void *block = gpa_raw_alloc(gpa_allocator(&one), sizes[i], 0);
    cross_t c = { &one, &two, block, sizes[i] };
    outcome_t out;
    run_child(free_cross, &c, &out);
    assert_reported(&out, block);
    assert_non_null(strstr(out.err, "belongs to the allocator with state at"));
    gpa_raw_free(gpa_allocator(&one), block, sizes[i], 0);
  }
  /* malloc's block handed to an instance. */
  void *m = malloc(50);
  cross_t c = { NULL, &two, m, 50 };
  outcome_t out;
  run_child(free_cross, &c, &out);
  assert_reported(&out, m);
  free(m);
  /* A size bigger than the block. */
  void *block = gpa_raw_alloc(gpa_allocator(&two), 40, 0);
  c = (cross_t){ &two, &two, block, 4000 };
  run_child(free_cross, &c, &out);
  assert_reported(&out, block);
  assert_non_null(strstr(out.err, "size mismatch"));
  gpa_raw_free(gpa_allocator(&two), block, 40, 0);
  assert_int_equal(gpa_deinit(&one), GPA_OK);
  assert_int_equal(gpa_deinit(&two), GPA_OK);
}

static void double_free_in_instance(void *arg) {
  cross_t *c = arg;
  gpa_raw_free(gpa_allocator(c->owner), launder(c->block), c->len, 0);
  gpa_raw_free(gpa_allocator(c->owner), launder(c->block), c->len, 0);
}

static void test_double_free_in_instance_is_caught(void **state) {
  (void)state;
  gpa_t gpa;
  assert_int_equal(gpa_init(&gpa, NULL), 0);
  size_t sizes[] = { 40, 2 * MiB };
  for (size_t i = 0; i < 2; i++) {
    void *block = gpa_raw_alloc(gpa_allocator(&gpa), sizes[i], 0);
    cross_t c = { &gpa, NULL, block, sizes[i] };
    outcome_t out;
    run_child(double_free_in_instance, &c, &out);
    assert_reported(&out, block);
    gpa_raw_free(gpa_allocator(&gpa), block, sizes[i], 0);
  }
  assert_int_equal(gpa_deinit(&gpa), GPA_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_init_deinit_clean),
    cmocka_unit_test(test_deinit_reports_leaks),
    cmocka_unit_test(test_remote_frees_are_not_leaks),
    cmocka_unit_test(test_blocks_outlive_their_thread),
    cmocka_unit_test(test_instances_never_share_blocks),
    cmocka_unit_test(test_deinit_returns_memory),
    cmocka_unit_test(test_threads_share_an_instance),
    cmocka_unit_test(test_single_thread_instance),
    cmocka_unit_test(test_many_instances_on_one_thread),
    cmocka_unit_test(test_thread_exits_after_deinit),
    cmocka_unit_test_setup_teardown(test_resize_and_remap, gpa_testing_setup, gpa_testing_teardown),
    cmocka_unit_test_setup_teardown(test_alignment, gpa_testing_setup, gpa_testing_teardown),
    cmocka_unit_test_setup_teardown(test_zero_length_is_a_real_block, gpa_testing_setup, gpa_testing_teardown),
    cmocka_unit_test(test_default_instance_is_malloc),
    cmocka_unit_test(test_default_instance_across_threads),
    cmocka_unit_test_setup_teardown(test_out_of_memory_is_null, gpa_testing_setup, gpa_testing_teardown),
    cmocka_unit_test(test_testing_allocator_fails_a_leaking_test),
    cmocka_unit_test(test_use_after_deinit_is_caught),
    cmocka_unit_test(test_free_through_another_instance_is_caught),
    cmocka_unit_test(test_double_free_in_instance_is_caught),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * unit_freelist.c: what a program that reads and writes freed memory can do
 * to the small-block free lists.  Whatever it writes into free or freshly
 * allocated blocks of a slab, malloc hands out block starts of that slab's
 * class, or reports the corrupted list and aborts; and one slab's key tells
 * nothing about another's.
 *
 * Each attack runs in a fork()ed child (child_support.h); the parent reads
 * how it ended.  A child exits CHILD_ESCAPED when malloc returned anything
 * but a block start of the class.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "child_support.h"
#include "internal.h"
#include "size_class.h"

enum { CHILD_ESCAPED = 9, BLOCK = 48, BLOCKS = 64, TRIALS = 300, MALLOCS_AFTER = 200 };

static const char REPORT[] = "corrupted free list in the slab of 48-byte blocks";

/* A block start of some slab of BLOCK's class: the only thing malloc may
 * return for BLOCK bytes. */
static bool is_class_block(const void *p) {
  gpa_segment_t *seg = segment_of(p);
  if (!segmap_contains(seg) || seg->kind != GPA_SEGMENT_SMALL) return false;
  gpa_slab_t *s = slab_of(seg, p);
  return s->class_index == size_class_of(BLOCK) && slab_is_block_start(s, p);
}

static void malloc_and_check(int count) {
  for (int i = 0; i < count; i++) {
    void *p = malloc(BLOCK);
    if (p == NULL || !is_class_block(p)) _exit(CHILD_ESCAPED);
  }
}

/* Word 1 of a free block holds its slab's key: one read gives it. */
static uintptr_t read_key(const void *freed) { return ((const gpa_block_t *)freed)->free_mark; }

/* ---- a forged link to an address of the program's choosing ----------------- */

static char target[256] __attribute__((aligned(64)));

/* Knowing the key, write a link to `target` the way an address-linked list
 * would decode it, and ask malloc for it. */
static void forge_owner_link(void *arg) {
  (void)arg;
  void *keep = malloc(BLOCK), *victim = malloc(BLOCK);
  free(victim);
  gpa_block_t *b = victim;
  b->next_encoded = (uintptr_t)target ^ read_key(victim);
  malloc_and_check(MALLOCS_AFTER);
  free(keep);
}

/* The child's forgery must end in the report and abort(), never in malloc
 * following it. */
static void assert_forgery_reported(action_fn forge) {
  outcome_t out;
  run_child(forge, NULL, &out);
  if (WIFEXITED(out.status) && WEXITSTATUS(out.status) == CHILD_ESCAPED) fail_msg("malloc followed the forged link");
  assert_true(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGABRT);
  assert_non_null(strstr(out.err, REPORT));
}

static void test_forged_owner_link_is_reported(void **state) {
  (void)state;
  assert_forgery_reported(forge_owner_link);
}

/* The same on the list other threads free onto, which the owner collects. */
static void *free_in_thread(void *p) {
  free(p);
  return NULL;
}

static void forge_remote_link(void *arg) {
  (void)arg;
  void *blocks[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) blocks[i] = malloc(BLOCK);
  pthread_t t;
  if (pthread_create(&t, NULL, free_in_thread, blocks[BLOCKS / 2]) != 0) _exit(3);
  pthread_join(t, NULL);
  gpa_block_t *b = blocks[BLOCKS / 2];
  b->next_encoded = (uintptr_t)target ^ read_key(b);
  /* Use up the owner's list, so malloc collects the remote one. */
  gpa_slab_t *s = slab_of(segment_of(b), b);
  while (slab_has_free(s)) (void)malloc(BLOCK);
  malloc_and_check(MALLOCS_AFTER);
}

static void test_forged_remote_link_is_reported(void **state) {
  (void)state;
  assert_forgery_reported(forge_remote_link);
}

/* ---- random reads and writes ------------------------------------------------ */

static uint64_t next_random(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* One trial: free a random half of a run of blocks, then overwrite words 0
 * and 1 of freed and live (fresh, never written) blocks with random values,
 * or with values built from what the blocks hold (the key, the links). */
static void scribble(void *arg) {
  uint64_t x = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull | 1;
  void *blocks[BLOCKS];
  bool freed[BLOCKS] = {false};
  for (int i = 0; i < BLOCKS; i++) blocks[i] = malloc(BLOCK);
  for (int i = 0; i < BLOCKS; i++)
    if (next_random(&x) & 1) {
      free(blocks[i]);
      freed[i] = true;
    }
  uintptr_t key = 0;
  for (int i = 0; i < BLOCKS && key == 0; i++)
    if (freed[i]) key = read_key(blocks[i]);
  int writes = 1 + (int)(next_random(&x) % 8);
  for (int w = 0; w < writes; w++) {
    uintptr_t *words = blocks[next_random(&x) % BLOCKS];
    uint64_t r = next_random(&x);
    uintptr_t value;
    switch (r % 6) {
    case 0: value = r; break;                                         /* noise */
    case 1: value = (uintptr_t)target ^ key; break;                   /* an address, keyed */
    case 2: value = (uintptr_t)blocks[r % BLOCKS] ^ key; break;       /* a block's address, keyed */
    case 3: value = ((r >> 8) % (2 * BLOCKS)) ^ key; break;           /* an index, keyed */
    case 4: value = (uintptr_t)blocks[r % BLOCKS] + 8 * (r >> 60); break; /* inside a block */
    default: value = key; break;                                       /* the free mark */
    }
    words[(r >> 32) & 1] = value;
  }
  malloc_and_check(MALLOCS_AFTER);
}

static void test_random_writes_never_escape_the_class(void **state) {
  (void)state;
  int clean = 0, reported = 0;
  for (uintptr_t trial = 1; trial <= TRIALS; trial++) {
    outcome_t out;
    run_child(scribble, (void *)trial, &out);
    if (WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0) {
      clean++;
    } else if (WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGABRT && strstr(out.err, "gpa: ") != NULL) {
      reported++;
    } else {
      fail_msg("trial %lu: status 0x%x, stderr \"%s\"", (unsigned long)trial, out.status, out.err);
    }
  }
  print_message("%d trials ran clean, %d were reported\n", clean, reported);
  /* Both outcomes occur: the writes do reach the lists. */
  assert_true(clean > 0);
  assert_true(reported > 0);
}

/* ---- keys ------------------------------------------------------------------ */

/* Every slab gets a fresh random key: not a function of its address (a slab
 * made again at the same place gets another), and not shared. */
static void test_keys_are_random_per_slab(void **state) {
  (void)state;
  gpa_heap_t *h = heap_current();
  assert_non_null(h);
  gpa_segment_t *seg = segment_small_acquire(h->instance, h);
  assert_non_null(seg);
  unsigned cls = size_class_of(BLOCK);
  enum { ROUNDS = 64 };
  uintptr_t keys[ROUNDS];
  uint8_t *start = NULL;
  for (int i = 0; i < ROUNDS; i++) {
    gpa_slab_t *s = segment_slab_alloc(seg, cls);
    assert_non_null(s);
    if (start == NULL) start = s->start;
    assert_ptr_equal(s->start, start); /* the same place each time */
    keys[i] = s->key;
    assert_int_not_equal(keys[i], 0);
    for (int j = 0; j < i; j++) assert_int_not_equal(keys[i], keys[j]);
    segment_slab_free(seg, s);
  }
  /* Two slabs side by side: unrelated keys (no bit pattern in common
   * beyond chance: their XOR is not a constant shared with the first pair). */
  gpa_slab_t *a = segment_slab_alloc(seg, cls), *b = segment_slab_alloc(seg, cls);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_not_equal(a->key, b->key);
  assert_int_not_equal(a->key ^ b->key, keys[0] ^ keys[1]);
  segment_slab_free(seg, a);
  segment_slab_free(seg, b);
  segment_small_release(seg);
}

/* A fork child draws its own keys: the parent's next slab and the child's
 * first one, made from the same heap's pool, differ. */
static uintptr_t next_slab_key(gpa_segment_t *seg) {
  gpa_slab_t *s = segment_slab_alloc(seg, size_class_of(BLOCK));
  assert_non_null(s);
  uintptr_t key = s->key;
  segment_slab_free(seg, s);
  return key;
}

static void test_fork_child_draws_fresh_keys(void **state) {
  (void)state;
  gpa_heap_t *h = heap_current();
  assert_non_null(h);
  gpa_segment_t *seg = segment_small_acquire(h->instance, h);
  assert_non_null(seg);
  (void)next_slab_key(seg); /* the pool now holds words for the next slabs */
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    uintptr_t key = next_slab_key(seg);
    _exit(write(fds[1], &key, sizeof key) == sizeof key ? 0 : 1);
  }
  uintptr_t child_key = 0;
  assert_int_equal(read(fds[0], &child_key, sizeof child_key), sizeof child_key);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  close(fds[0]);
  close(fds[1]);
  assert_int_not_equal(child_key, next_slab_key(seg));
  segment_small_release(seg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_keys_are_random_per_slab),
    cmocka_unit_test(test_fork_child_draws_fresh_keys),
    cmocka_unit_test(test_forged_owner_link_is_reported),
    cmocka_unit_test(test_forged_remote_link_is_reported),
    cmocka_unit_test(test_random_writes_never_escape_the_class),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

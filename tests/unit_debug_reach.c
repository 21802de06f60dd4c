/* unit_debug_reach.c: the reachability scan: roots in globals, in caller
 * frames, in other threads' stacks and in memory the program mapped itself;
 * pointers between blocks; direct and indirect lost blocks; what is never a
 * root (the checker's own frames, the blocks array, the allocator's memory).
 *
 * Blocks live in a region this test maps and reports as the allocator's
 * own.  Every test gets a fresh region and none is ever unmapped, so a
 * stale copy of an earlier test's pointer cannot land in the current
 * region.  Test functions handle block indices only; addresses are made in
 * noinline helpers that return before the scan, whose dead frames lie below
 * the scanned part of the stack (see classify_blocks_here), and the setup's
 * dead frames are cleared (scrub_dead_stack). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include "debug_reach.h"
#include "os.h"

/* Pages that fault inside a mapping /proc/self/maps lists as rw-p without
 * splitting it (Linux 6.13, include/uapi/asm-generic/mman-common.h). */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define NOINLINE __attribute__((noinline))
/* Keeps a call from becoming a tail call, which would let the callee's
 * frame take the caller's place on the stack. */
#define AFTER_CALL() __asm__ volatile("" ::: "memory")

#define BLOCK_COUNT 64
#define SLOT_BYTES 64
/* Bytes the program asked for: less than the slot, as in a size class, so
 * start + size points into slack that belongs to no block. */
#define BLOCK_BYTES 48

/* The region's page number rather than its start: the start itself is
 * block 0's address and would keep it reachable. */
static uintptr_t region_page;
static size_t region_bytes;
static bool region_owned;
static reach_block_t fixture_blocks[BLOCK_COUNT];
static volatile uintptr_t global_slot;

static uintptr_t region_start(void) { return region_page * os_page_size(); }

static bool owned_by_allocator(void *ctx, uintptr_t addr, uintptr_t *end) {
  (void)ctx;
  uintptr_t start = region_start();
  if (!region_owned || addr < start || addr >= start + region_bytes) return false;
  *end = start + region_bytes;
  return true;
}

static NOINLINE void new_region(void) {
  region_bytes = (BLOCK_COUNT * SLOT_BYTES + os_page_size() - 1) & ~(os_page_size() - 1);
  void *p = mmap(NULL, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  region_page = (uintptr_t)p / os_page_size();
  region_owned = true;
  for (size_t i = 0; i < BLOCK_COUNT; i++) {
    fixture_blocks[i].start = (uintptr_t)p + i * SLOT_BYTES;
    fixture_blocks[i].size = BLOCK_BYTES;
    fixture_blocks[i].state = REACH_REACHABLE; /* classify must overwrite it */
    fixture_blocks[i].group = (uint32_t)i;
  }
}

/* Deeper than the setup's calls (new_region, mmap) reach. */
#define SCRUB_BYTES 16384

/* The setup's dead frames lie where the test function's frame goes next,
 * and a test frame's unused slots are scanned: clear them, or a stale copy
 * of the region's start keeps block 0 alive (seen at -O3). */
static NOINLINE void scrub_dead_stack(void) {
  char scratch[SCRUB_BYTES];
  memset(scratch, 0, sizeof scratch);
  __asm__ volatile("" : : "r"(scratch) : "memory"); /* the stores must happen */
}

static int region_setup(void **state) {
  (void)state;
  new_region();
  scrub_dead_stack();
  return 0;
}

static NOINLINE uintptr_t block_addr(size_t i) { return region_start() + i * SLOT_BYTES; }

/* Word `word` of block `from` points `offset` bytes into block `to`. */
static NOINLINE void link_blocks(size_t from, size_t word, size_t to, size_t offset) {
  ((volatile uintptr_t *)block_addr(from))[word] = block_addr(to) + offset;
}

static NOINLINE void store_global(size_t i, size_t offset) { global_slot = block_addr(i) + offset; }

static NOINLINE void clear_global(void) { global_slot = 0; }

/* Scans from this function's frame: the frames of its callers (the test
 * and cmocka) are roots, its own and the scanner's are not.  Helpers the
 * test called before have returned, and their frames were at this frame's
 * depth or deeper, so their leftovers are below `stack_from` too. */
static NOINLINE bool classify_blocks_here(reach_block_t *blocks, size_t n) {
  volatile bool ok =
    debug_reach_classify(blocks, n, owned_by_allocator, NULL, NULL, (uintptr_t)__builtin_frame_address(0));
  AFTER_CALL();
  return ok;
}

static bool classify_here(void) { return classify_blocks_here(fixture_blocks, BLOCK_COUNT); }

static uint32_t state_of(size_t i) { return fixture_blocks[i].state; }

static size_t count_state(uint32_t state) {
  size_t count = 0;
  for (size_t i = 0; i < BLOCK_COUNT; i++) count += fixture_blocks[i].state == state;
  return count;
}

static void test_global_keeps_block_reachable(void **state) {
  (void)state;
  store_global(3, 0);
  assert_true(classify_here());
  assert_int_equal(state_of(3), REACH_REACHABLE);
  assert_int_equal(state_of(4), REACH_DIRECT);
  assert_int_equal(count_state(REACH_REACHABLE), 1);
  assert_int_equal(fixture_blocks[3].group, 3); /* the caller's field is left alone */

  clear_global();
  assert_true(classify_here());
  assert_int_equal(state_of(3), REACH_DIRECT);
  assert_int_equal(count_state(REACH_DIRECT), BLOCK_COUNT);
}

/* A volatile local of this frame, above the frame the scan starts from. */
static NOINLINE void hold_in_local_and_classify(size_t i) {
  volatile uintptr_t held = block_addr(i);
  assert_true(classify_here());
  held = 0;
  (void)held;
}

static void test_caller_local_keeps_block_reachable(void **state) {
  (void)state;
  hold_in_local_and_classify(7);
  AFTER_CALL();
  assert_int_equal(state_of(7), REACH_REACHABLE);
  assert_int_equal(count_state(REACH_REACHABLE), 1);
}

static void test_pointer_from_reachable_block(void **state) {
  (void)state;
  store_global(10, 0);
  link_blocks(10, 0, 20, 0);
  link_blocks(20, 3, 30, 0); /* any word of the block counts */
  link_blocks(31, 0, 32, 0); /* a lost block pointing elsewhere */
  assert_true(classify_here());
  assert_int_equal(state_of(10), REACH_REACHABLE);
  assert_int_equal(state_of(20), REACH_REACHABLE);
  assert_int_equal(state_of(30), REACH_REACHABLE);
  assert_int_equal(state_of(31), REACH_DIRECT);
  assert_int_equal(state_of(32), REACH_INDIRECT);
  assert_int_equal(count_state(REACH_REACHABLE), 3);
  clear_global();
}

static volatile uintptr_t *address_page;

static NOINLINE void store_every_address(void) {
  for (size_t i = 0; i < BLOCK_COUNT; i++) address_page[i] = block_addr(i);
}

static void test_every_block_in_one_chain_or_at_once(void **state) {
  (void)state;
  /* Deep: each block is reached only through the one before. */
  for (size_t i = 1; i + 1 < BLOCK_COUNT; i++) link_blocks(i, 0, i + 1, 0);
  store_global(1, 0);
  assert_true(classify_here());
  assert_int_equal(count_state(REACH_REACHABLE), BLOCK_COUNT - 1);
  assert_int_equal(state_of(0), REACH_DIRECT);
  clear_global();

  /* Wide: every block is on the mark stack at once. */
  void *p = mmap(NULL, os_page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  address_page = p;
  store_every_address();
  assert_true(classify_here());
  assert_int_equal(count_state(REACH_REACHABLE), BLOCK_COUNT);
  memset(p, 0, os_page_size()); /* left mapped, as the regions are */
}

static void test_dropped_pointer_is_direct(void **state) {
  (void)state;
  store_global(5, 0);
  clear_global();
  assert_true(classify_here());
  assert_int_equal(state_of(5), REACH_DIRECT);
  assert_int_equal(count_state(REACH_DIRECT), BLOCK_COUNT);
}

/* Nodes deliberately out of address order: the result must not depend on
 * the order blocks are visited in. */
static const size_t list_nodes[] = { 40, 12, 33, 5, 20 };
#define LIST_LENGTH (sizeof list_nodes / sizeof list_nodes[0])

static void build_list(void) {
  for (size_t k = 0; k + 1 < LIST_LENGTH; k++) link_blocks(list_nodes[k], 1, list_nodes[k + 1], 0);
}

static void test_lost_list_is_one_direct_rest_indirect(void **state) {
  (void)state;
  build_list();
  store_global(list_nodes[0], 0);
  assert_true(classify_here());
  for (size_t k = 0; k < LIST_LENGTH; k++) assert_int_equal(state_of(list_nodes[k]), REACH_REACHABLE);

  clear_global();
  assert_true(classify_here());
  assert_int_equal(state_of(list_nodes[0]), REACH_DIRECT);
  for (size_t k = 1; k < LIST_LENGTH; k++) assert_int_equal(state_of(list_nodes[k]), REACH_INDIRECT);
  assert_int_equal(count_state(REACH_INDIRECT), LIST_LENGTH - 1);
  assert_int_equal(count_state(REACH_DIRECT), BLOCK_COUNT - (LIST_LENGTH - 1));
  assert_int_equal(count_state(REACH_REACHABLE), 0);
}

static void test_lost_cycle_is_indirect_self_pointer_direct(void **state) {
  (void)state;
  link_blocks(2, 0, 3, 0);
  link_blocks(3, 0, 2, 0);
  link_blocks(9, 0, 9, 0);
  assert_true(classify_here());
  assert_int_equal(state_of(2), REACH_INDIRECT);
  assert_int_equal(state_of(3), REACH_INDIRECT);
  assert_int_equal(state_of(9), REACH_DIRECT);
}

static void test_interior_pointer_and_bounds(void **state) {
  (void)state;
  store_global(6, 10);
  link_blocks(6, 0, 11, BLOCK_BYTES - 1); /* last byte: inside */
  link_blocks(6, 1, 12, BLOCK_BYTES);     /* one past the end: in the slack, no block */
  fixture_blocks[13].size = 0;            /* a zero-size block is hit by its start only */
  fixture_blocks[14].size = 0;
  link_blocks(6, 2, 13, 0);
  link_blocks(6, 3, 14, 1);
  assert_true(classify_here());
  assert_int_equal(state_of(6), REACH_REACHABLE);
  assert_int_equal(state_of(11), REACH_REACHABLE);
  assert_int_equal(state_of(12), REACH_DIRECT);
  assert_int_equal(state_of(13), REACH_REACHABLE);
  assert_int_equal(state_of(14), REACH_DIRECT);
  clear_global();
}

static pthread_mutex_t holder_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t holder_cond = PTHREAD_COND_INITIALIZER;
static bool holder_ready, holder_release;

static void *holder_thread(void *arg) {
  volatile uintptr_t held = block_addr((size_t)(uintptr_t)arg);
  pthread_mutex_lock(&holder_lock);
  holder_ready = true;
  pthread_cond_broadcast(&holder_cond);
  while (!holder_release) pthread_cond_wait(&holder_cond, &holder_lock);
  pthread_mutex_unlock(&holder_lock);
  held = 0;
  (void)held;
  return NULL;
}

static void test_other_thread_stack_is_root(void **state) {
  (void)state;
  pthread_t thread;
  holder_ready = holder_release = false;
  assert_int_equal(pthread_create(&thread, NULL, holder_thread, (void *)(uintptr_t)17), 0);
  pthread_mutex_lock(&holder_lock);
  while (!holder_ready) pthread_cond_wait(&holder_cond, &holder_lock);
  pthread_mutex_unlock(&holder_lock);

  bool ok = classify_here();

  pthread_mutex_lock(&holder_lock);
  holder_release = true;
  pthread_cond_broadcast(&holder_cond);
  pthread_mutex_unlock(&holder_lock);
  pthread_join(thread, NULL);
  assert_true(ok);
  assert_int_equal(state_of(17), REACH_REACHABLE);
  assert_int_equal(count_state(REACH_REACHABLE), 1);
}

static volatile uintptr_t *own_mapping;

static NOINLINE void store_in_own_mapping(size_t i) { own_mapping[100] = block_addr(i); }

static void test_program_mapping_is_root(void **state) {
  (void)state;
  void *p = mmap(NULL, os_page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  own_mapping = p;
  store_in_own_mapping(21);
  assert_true(classify_here());
  assert_int_equal(state_of(21), REACH_REACHABLE);

  own_mapping[100] = 0;
  assert_true(classify_here());
  assert_int_equal(state_of(21), REACH_DIRECT);
  /* Left mapped: a later region placed at this address would meet stale
   * copies of `p`. */
}

/* Ended threads' stacks: mappings the callback names.  The first sits on
 * a guard page (an inaccessible mapping just below), as the C library's
 * thread stacks do; the second on a readable page, as other memory may,
 * so it stays a root whatever the callback says.  Pages: guard, stack,
 * "descriptor" above the stack's end. */
#define ENDED_PAGES 3

static volatile uintptr_t *guarded_stack, *unguarded_stack;

static bool ended_stack_named(void *ctx, uintptr_t lo, uintptr_t *end) {
  (void)ctx;
  size_t page = os_page_size();
  if (lo != (uintptr_t)guarded_stack && lo != (uintptr_t)unguarded_stack) return false;
  *end = lo + page; /* the page above, the descriptor's, stays a root */
  return true;
}

static NOINLINE bool classify_with_ended_stacks_here(void) {
  volatile bool ok = debug_reach_classify(fixture_blocks, BLOCK_COUNT, owned_by_allocator, ended_stack_named, NULL,
                                          (uintptr_t)__builtin_frame_address(0));
  AFTER_CALL();
  return ok;
}

/* The page below the stack made inaccessible (a guard) or read-only. */
static volatile uintptr_t *map_stack(int below) {
  size_t page = os_page_size();
  uint8_t *p = mmap(NULL, ENDED_PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  assert_int_equal(mprotect(p, page, below), 0);
  return (volatile uintptr_t *)(p + page);
}

static NOINLINE void store_in_stacks(void) {
  size_t words = os_page_size() / sizeof(uintptr_t);
  guarded_stack[3] = block_addr(30);
  guarded_stack[words + 3] = block_addr(31); /* past the stack's end */
  unguarded_stack[3] = block_addr(32);
}

static void test_ended_thread_stack_is_not_root(void **state) {
  (void)state;
  guarded_stack = map_stack(PROT_NONE);
  unguarded_stack = map_stack(PROT_READ);
  store_in_stacks();
  assert_true(classify_with_ended_stacks_here());
  assert_int_equal(state_of(30), REACH_DIRECT);
  assert_int_equal(state_of(31), REACH_REACHABLE);
  assert_int_equal(state_of(32), REACH_REACHABLE);
  /* Without the callback, every one is a root. */
  assert_true(classify_here());
  assert_int_equal(state_of(30), REACH_REACHABLE);
  /* Left mapped, as in test_program_mapping_is_root. */
}

/* Over a thousand lines of /proc/self/maps, read in pieces of a few KiB:
 * a line lost where a read splits it would lose the root in it. */
#define MANY_PAGES 1200

static volatile uintptr_t *many_pages;

static NOINLINE void store_in_page(size_t page, size_t i) {
  many_pages[page * os_page_size() / sizeof(uintptr_t) + i % 7] = block_addr(i);
}

static void test_many_mappings(void **state) {
  (void)state;
  size_t page = os_page_size();
  void *p = mmap(NULL, MANY_PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  many_pages = p;
  /* Every other page read-only: the kernel cannot merge them into one. */
  for (size_t k = 1; k < MANY_PAGES; k += 2)
    assert_int_equal(mprotect((char *)p + k * page, page, PROT_READ), 0);
  /* Block i in writable page 2 * (9i + 5): spread over the whole range. */
  for (size_t i = 0; i < BLOCK_COUNT; i++) store_in_page(2 * (9 * i + 5), i);
  assert_true(classify_here());
  assert_int_equal(count_state(REACH_REACHABLE), BLOCK_COUNT);
  /* Left mapped, as the regions are. */
}

static volatile uintptr_t *unreadable_test_pages;

static NOINLINE void store_at(size_t page, size_t i) {
  unreadable_test_pages[page * os_page_size() / sizeof(uintptr_t)] = block_addr(i);
}

/* Pages listed as rw-p that fault when touched: the scan must step over
 * them (reading them in place would kill the process) and go on. */
static void test_unreadable_pages_are_skipped(void **state) {
  (void)state;
  size_t page = os_page_size();
  /* A private mapping of a file, one page past its end: SIGBUS there. */
  int fd = memfd_create("reach_test", 0);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)page), 0);
  void *file_map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  close(fd);
  assert_true(file_map != MAP_FAILED);
  unreadable_test_pages = file_map;
  store_at(0, 30);
  assert_true(classify_here());
  assert_int_equal(state_of(30), REACH_REACHABLE);
  assert_int_equal(count_state(REACH_REACHABLE), 1);

  /* A guard page in the middle of one mapping: the page after it counts. */
  void *anon = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(anon != MAP_FAILED);
  unreadable_test_pages = anon;
  store_at(0, 31);
  store_at(2, 32);
  if (madvise((char *)anon + page, page, MADV_GUARD_INSTALL) != 0) skip(); /* before Linux 6.13 */
  assert_true(classify_here());
  assert_int_equal(state_of(31), REACH_REACHABLE);
  assert_int_equal(state_of(32), REACH_REACHABLE);
}

/* The pointer is in this frame, below the caller's frame where the scan
 * starts; with stack_from 0 the whole stack is scanned and it is found,
 * which shows it really is on the stack. */
static NOINLINE bool hold_below_and_classify(size_t i, uintptr_t stack_from) {
  volatile uintptr_t held = block_addr(i);
  volatile bool ok = debug_reach_classify(fixture_blocks, BLOCK_COUNT, owned_by_allocator, NULL, NULL, stack_from);
  held = 0;
  (void)held;
  return ok;
}

static NOINLINE bool classify_with_pointer_below(size_t i, bool whole_stack) {
  uintptr_t from = whole_stack ? 0 : (uintptr_t)__builtin_frame_address(0);
  volatile bool ok = hold_below_and_classify(i, from);
  AFTER_CALL();
  return ok;
}

static void test_checker_frames_are_not_roots(void **state) {
  (void)state;
  assert_true(classify_with_pointer_below(25, false));
  AFTER_CALL();
  assert_int_equal(state_of(25), REACH_DIRECT);
  assert_int_equal(count_state(REACH_DIRECT), BLOCK_COUNT);

  assert_true(classify_with_pointer_below(25, true));
  AFTER_CALL();
  assert_int_equal(state_of(25), REACH_REACHABLE);
}

static void test_blocks_array_on_stack_is_not_root(void **state) {
  (void)state;
  /* Above the scan's start, and full of block addresses. */
  reach_block_t blocks[BLOCK_COUNT];
  memcpy(blocks, fixture_blocks, sizeof blocks);
  /* The fixture's copy is a root here (not the array being classified). */
  memset(fixture_blocks, 0, sizeof fixture_blocks);
  store_global(8, 0);
  bool ok = classify_blocks_here(blocks, BLOCK_COUNT);
  clear_global();
  memcpy(fixture_blocks, blocks, sizeof blocks);
  assert_true(ok);
  assert_int_equal(blocks[8].state, REACH_REACHABLE);
  assert_int_equal(blocks[9].state, REACH_DIRECT);
  size_t reachable = 0;
  for (size_t i = 0; i < BLOCK_COUNT; i++) reachable += blocks[i].state == REACH_REACHABLE;
  assert_int_equal(reachable, 1);
}

/* Where the blocks sit in memory the callback does not claim, their bytes
 * are still not roots; the slack between them is. */
static void test_blocks_are_never_roots(void **state) {
  (void)state;
  region_owned = false;
  build_list();
  link_blocks(50, BLOCK_BYTES / sizeof(uintptr_t), 51, 0); /* in block 50's slack */
  assert_true(classify_here());
  assert_int_equal(state_of(list_nodes[0]), REACH_DIRECT);
  for (size_t k = 1; k < LIST_LENGTH; k++) assert_int_equal(state_of(list_nodes[k]), REACH_INDIRECT);
  assert_int_equal(state_of(51), REACH_REACHABLE);

  region_owned = true;
  assert_true(classify_here());
  assert_int_equal(state_of(51), REACH_DIRECT);
}

static void test_unreadable_maps_leaves_direct(void **state) {
  (void)state;
  struct rlimit saved;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit none = { .rlim_cur = 0, .rlim_max = saved.rlim_max };
  store_global(4, 0);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0); /* every open fails: EMFILE */
  errno = EDOM;
  bool ok = classify_here();
  int err = errno; /* open failed with EMFILE inside: not seen by the caller */
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
  clear_global();
  assert_false(ok);
  assert_int_equal(err, EDOM);
  assert_int_equal(count_state(REACH_DIRECT), BLOCK_COUNT);
}

static void test_errno_and_empty_input(void **state) {
  (void)state;
  store_global(1, 0);
  errno = EDOM;
  assert_true(classify_here());
  assert_int_equal(errno, EDOM);
  assert_int_equal(state_of(1), REACH_REACHABLE);
  clear_global();
  assert_true(debug_reach_classify(fixture_blocks, 0, owned_by_allocator, NULL, NULL, 0));
  assert_int_equal(errno, EDOM);
}

/* Released work memory: repeated scans leave the os layer's count as it was. */
static void test_work_memory_given_back(void **state) {
  (void)state;
  size_t before = os_mapped_bytes();
  for (int round = 0; round < 3; round++) assert_true(classify_here());
  assert_int_equal(os_mapped_bytes(), before);
}

/* Another thread maps and unmaps pages all through the scans: a root page
 * listed in /proc/self/maps may be gone by the time it is read. */
#define CHURN_SCANS 40
#define CHURN_PAGES 64

static atomic_bool churn_stop;

static void *churn_thread(void *arg) {
  (void)arg;
  size_t size = CHURN_PAGES * os_page_size();
  while (!atomic_load(&churn_stop)) {
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) continue;
    for (size_t off = 0; off < size; off += os_page_size()) p[off] = 1;
    munmap(p, size);
  }
  return NULL;
}

static void test_scan_survives_unmapping_thread(void **state) {
  (void)state;
  pthread_t thread;
  atomic_store(&churn_stop, false);
  assert_int_equal(pthread_create(&thread, NULL, churn_thread, NULL), 0);
  store_global(2, 0);
  size_t classified = 0;
  for (int round = 0; round < CHURN_SCANS; round++)
    classified += classify_here() && state_of(2) == REACH_REACHABLE && state_of(3) == REACH_DIRECT;
  clear_global();
  atomic_store(&churn_stop, true);
  pthread_join(thread, NULL);
  assert_int_equal(classified, CHURN_SCANS);
}

/* Many blocks of random sizes (zero included) and gaps in two clusters far
 * apart, hit by words aimed around them: the states must match a plain
 * search over every block. */
#define RANDOM_BLOCKS 3000
#define RANDOM_ROOTS 2000
#define CLUSTER_BYTES ((size_t)1 << 20)
/* Where the second cluster is asked for: 64 GiB above the first, so the
 * lookup index spans a range far wider than the blocks. */
#define CLUSTER_DISTANCE ((uintptr_t)1 << 36)

static reach_block_t random_blocks[RANDOM_BLOCKS];
static uint32_t random_expected[RANDOM_BLOCKS];
static uintptr_t cluster_page[2]; /* page numbers, as for the region */
static volatile uintptr_t *random_roots;
static uint64_t random_state = 0x2545F4914F6CDD1Dull;

static uint64_t next_random(void) {
  /* xorshift64 (Marsaglia, 2003) */
  random_state ^= random_state << 13;
  random_state ^= random_state >> 7;
  random_state ^= random_state << 17;
  return random_state;
}

static bool owned_clusters(void *ctx, uintptr_t addr, uintptr_t *end) {
  (void)ctx;
  for (int c = 0; c < 2; c++) {
    uintptr_t start = cluster_page[c] * os_page_size();
    if (addr >= start && addr < start + CLUSTER_BYTES) {
      *end = start + CLUSTER_BYTES;
      return true;
    }
  }
  return false;
}

static NOINLINE void map_clusters(void) {
  int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
  uint8_t *low = mmap(NULL, CLUSTER_BYTES, prot, flags, -1, 0);
  assert_true(low != MAP_FAILED);
  uint8_t *high = mmap(low + CLUSTER_DISTANCE, CLUSTER_BYTES, prot, flags | MAP_FIXED_NOREPLACE, -1, 0);
  if (high == MAP_FAILED) high = mmap(NULL, CLUSTER_BYTES, prot, flags, -1, 0);
  assert_true(high != MAP_FAILED);
  if (high < low) {
    uint8_t *t = low;
    low = high;
    high = t;
  }
  cluster_page[0] = (uintptr_t)low / os_page_size();
  cluster_page[1] = (uintptr_t)high / os_page_size();
}

static NOINLINE void lay_out_random_blocks(void) {
  for (size_t i = 0; i < RANDOM_BLOCKS; i++) {
    size_t cluster = i < RANDOM_BLOCKS / 2 ? 0 : 1;
    uintptr_t at = i == 0 || i == RANDOM_BLOCKS / 2
                     ? cluster_page[cluster] * os_page_size() + 16
                     : random_blocks[i - 1].start + random_blocks[i - 1].size + 1;
    at = (at + 16 * (next_random() % 4) + 15) & ~(uintptr_t)15;
    random_blocks[i].start = at;
    random_blocks[i].size = next_random() % 5 == 0 ? 0 : (size_t)(next_random() % 300);
  }
  /* Both halves fit their cluster (mean step ~150 bytes, 1500 blocks). */
  for (size_t c = 0; c < 2; c++) {
    const reach_block_t *last = &random_blocks[(c + 1) * (RANDOM_BLOCKS / 2) - 1];
    assert_true(last->start + last->size < cluster_page[c] * os_page_size() + CLUSTER_BYTES);
  }
}

static NOINLINE void aim_random_roots(void) {
  for (size_t r = 0; r < RANDOM_ROOTS; r++) {
    const reach_block_t *b = &random_blocks[next_random() % RANDOM_BLOCKS];
    uintptr_t word = b->start + (uintptr_t)(next_random() % (b->size + 24)) - 8; /* around the block */
    random_roots[r] = word;
    for (size_t j = 0; j < RANDOM_BLOCKS; j++) {
      const reach_block_t *c = &random_blocks[j];
      if ((word >= c->start && word < c->start + c->size) || word == c->start)
        random_expected[j] = REACH_REACHABLE;
    }
  }
}

static void test_random_layout_matches_plain_search(void **state) {
  (void)state;
  map_clusters();
  lay_out_random_blocks();
  void *roots = mmap(NULL, RANDOM_ROOTS * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(roots != MAP_FAILED);
  random_roots = roots;
  aim_random_roots();
  volatile bool ok = debug_reach_classify(random_blocks, RANDOM_BLOCKS, owned_clusters, NULL, NULL,
                                          (uintptr_t)__builtin_frame_address(0));
  assert_true(ok);
  size_t reachable = 0;
  for (size_t j = 0; j < RANDOM_BLOCKS; j++) {
    assert_int_equal(random_blocks[j].state, random_expected[j]);
    reachable += random_expected[j] == REACH_REACHABLE;
  }
  assert_true(reachable > RANDOM_BLOCKS / 4 && reachable < RANDOM_BLOCKS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_global_keeps_block_reachable, region_setup),
    cmocka_unit_test_setup(test_caller_local_keeps_block_reachable, region_setup),
    cmocka_unit_test_setup(test_pointer_from_reachable_block, region_setup),
    cmocka_unit_test_setup(test_every_block_in_one_chain_or_at_once, region_setup),
    cmocka_unit_test_setup(test_dropped_pointer_is_direct, region_setup),
    cmocka_unit_test_setup(test_lost_list_is_one_direct_rest_indirect, region_setup),
    cmocka_unit_test_setup(test_lost_cycle_is_indirect_self_pointer_direct, region_setup),
    cmocka_unit_test_setup(test_interior_pointer_and_bounds, region_setup),
    cmocka_unit_test_setup(test_other_thread_stack_is_root, region_setup),
    cmocka_unit_test_setup(test_program_mapping_is_root, region_setup),
    cmocka_unit_test_setup(test_ended_thread_stack_is_not_root, region_setup),
    cmocka_unit_test_setup(test_many_mappings, region_setup),
    cmocka_unit_test_setup(test_unreadable_pages_are_skipped, region_setup),
    cmocka_unit_test_setup(test_checker_frames_are_not_roots, region_setup),
    cmocka_unit_test_setup(test_blocks_array_on_stack_is_not_root, region_setup),
    cmocka_unit_test_setup(test_blocks_are_never_roots, region_setup),
    cmocka_unit_test_setup(test_unreadable_maps_leaves_direct, region_setup),
    cmocka_unit_test_setup(test_errno_and_empty_input, region_setup),
    cmocka_unit_test_setup(test_work_memory_given_back, region_setup),
    cmocka_unit_test_setup(test_scan_survives_unmapping_thread, region_setup),
    cmocka_unit_test(test_random_layout_matches_plain_search),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

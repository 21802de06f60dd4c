/* unit_debug_stack.c: call stacks of the debug layer: captures through
 * frame pointers and backtrace() name the right functions in order, broken
 * frame-pointer chains end the walk inside the thread's stack, the depot
 * keeps one id per distinct stack (also under concurrent saves), and the
 * printed form.  Built with frame pointers and -rdynamic, so that dladdr
 * names this program's exported functions. */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "debug_stack.h"
#include "writer.h"
#include "os.h"

/* Keeps calls from being folded into their callers or turned into jumps. */
#define BARRIER() __asm__ volatile("" ::: "memory")

/* Exported (non-static) so that dladdr finds their names. */
unsigned stack_test_entry(uintptr_t *frames, unsigned max, bool exact);
unsigned stack_test_entry_without_frame_pointer(uintptr_t *frames, unsigned max, bool exact);
unsigned stack_test_leaf(uintptr_t *frames, unsigned max, bool exact, bool entry_has_fp);
unsigned stack_test_middle(uintptr_t *frames, unsigned max, bool exact, bool entry_has_fp);
unsigned stack_test_outer(uintptr_t *frames, unsigned max, bool exact, bool entry_has_fp);
unsigned stack_test_recurse(unsigned depth, uintptr_t *frames, unsigned max, bool exact);
/* In assembly below: calls debug_stack_capture(frames, max, <its own return
 * address>, false) with rbp set to `fake_rbp`, as code without frame
 * pointers may leave it. */
unsigned stack_test_call_with_rbp(uintptr_t *frames, unsigned max, uintptr_t fake_rbp);
unsigned stack_test_with_rbp(uintptr_t *frames, unsigned max, uintptr_t fake_rbp);
unsigned stack_test_hook_keeping_a_copy(uintptr_t *out, unsigned max, uintptr_t ret_addr);
unsigned stack_test_hook_with_own_buffer(uintptr_t *out, unsigned max, uintptr_t ret_addr);
unsigned stack_test_entry_to_copying_hook(uintptr_t *out, unsigned max);
unsigned stack_test_entry_to_buffering_hook(uintptr_t *out, unsigned max);
unsigned stack_test_hooked(uintptr_t *out, unsigned max, bool own_buffer);
unsigned stack_test_hooked_outer(uintptr_t *out, unsigned max, bool own_buffer);
void stack_test_on_foreign_stack(void);

/* How stack_test_entry captures when not exact: as debug_stack_capture, or
 * through debug_stack_capture_id (the frames then loaded from the depot)
 * given its own frame (as the debug layer's entry points do), a frame
 * that is not the entry's record, or made-up records. */
enum { ENTRY_FIND_LIBRARY_FRAMES, ENTRY_OWN_FRAME, ENTRY_WRONG_FRAME, ENTRY_MADE_UP_RECORDS };
/* ENTRY_MADE_UP_RECORDS: two frame records on the stack, the first holding
 * ret_addr, the second this return address and the end of the chain. */
#define MADE_UP_RETURN ((uintptr_t)0xabc0)
static int entry_mode = ENTRY_FIND_LIBRARY_FRAMES;

/* Stands in for the allocator's entry point: ret_addr is the return address
 * of the call into it. */
__attribute__((noipa)) unsigned stack_test_entry(uintptr_t *frames, unsigned max, bool exact) {
  uintptr_t ret_addr = (uintptr_t)__builtin_return_address(0);
  uintptr_t own = (uintptr_t)__builtin_frame_address(0);
  unsigned n;
  volatile uintptr_t records[4] = {0, ret_addr, 0, MADE_UP_RETURN};
  records[0] = (uintptr_t)&records[2];
  if (exact || entry_mode == ENTRY_FIND_LIBRARY_FRAMES) {
    n = debug_stack_capture(frames, max, ret_addr, exact);
  } else {
    /* The wrong frame: the caller's, whose record holds another return
     * address. */
    uintptr_t entry = entry_mode == ENTRY_OWN_FRAME     ? own
                      : entry_mode == ENTRY_WRONG_FRAME ? *(uintptr_t *)own
                                                        : (uintptr_t)&records[0];
    const uintptr_t *saved;
    n = debug_stack_load(debug_stack_capture_id(max, ret_addr, entry), &saved);
    memcpy(frames, saved, n * sizeof *saved);
  }
  BARRIER();
  return n;
}

/* The same, compiled as the core allocator is: no frame record of its own,
 * so the walk never meets ret_addr in the chain. */
__attribute__((noipa, optimize("omit-frame-pointer"))) unsigned
stack_test_entry_without_frame_pointer(uintptr_t *frames, unsigned max, bool exact) {
  unsigned n = debug_stack_capture(frames, max, (uintptr_t)__builtin_return_address(0), exact);
  BARRIER();
  return n;
}

__attribute__((noipa)) unsigned stack_test_leaf(uintptr_t *frames, unsigned max, bool exact,
                                                bool entry_has_fp) {
  unsigned n = entry_has_fp ? stack_test_entry(frames, max, exact)
                            : stack_test_entry_without_frame_pointer(frames, max, exact);
  BARRIER();
  return n;
}

__attribute__((noipa)) unsigned stack_test_middle(uintptr_t *frames, unsigned max, bool exact,
                                                  bool entry_has_fp) {
  unsigned n = stack_test_leaf(frames, max, exact, entry_has_fp);
  BARRIER();
  return n;
}

__attribute__((noipa)) unsigned stack_test_outer(uintptr_t *frames, unsigned max, bool exact,
                                                 bool entry_has_fp) {
  unsigned n = stack_test_middle(frames, max, exact, entry_has_fp);
  BARRIER();
  return n;
}

__attribute__((noipa)) unsigned stack_test_recurse(unsigned depth, uintptr_t *frames, unsigned max,
                                                   bool exact) {
  unsigned n = depth == 0 ? stack_test_entry(frames, max, exact)
                          : stack_test_recurse(depth - 1, frames, max, exact);
  BARRIER();
  return n;
}

__asm__(".pushsection .text\n"
        ".globl stack_test_call_with_rbp\n"
        ".type stack_test_call_with_rbp, @function\n"
        "stack_test_call_with_rbp:\n"
        "  push %rbp\n"
        "  mov %rdx, %rbp\n"
        "  mov 8(%rsp), %rdx\n" /* ret_addr: this function's return address */
        "  xor %ecx, %ecx\n"    /* exact = false */
        "  call debug_stack_capture@PLT\n"
        "  pop %rbp\n"
        "  ret\n"
        ".size stack_test_call_with_rbp, .-stack_test_call_with_rbp\n"
        ".popsection\n");

/* The caller of the assembly: frames[0] lies in it. */
__attribute__((noipa)) unsigned stack_test_with_rbp(uintptr_t *frames, unsigned max, uintptr_t fake_rbp) {
  unsigned n = stack_test_call_with_rbp(frames, max, fake_rbp);
  BARRIER();
  return n;
}

/* Library-side code that leaves copies of ret_addr on the stack between the
 * capture and the program's call: the scan for ret_addr's slot meets them
 * first. */
__attribute__((noipa)) unsigned stack_test_hook_keeping_a_copy(uintptr_t *out, unsigned max,
                                                               uintptr_t ret_addr) {
  volatile uintptr_t copy = ret_addr; /* a local: below this frame's record */
  unsigned n = debug_stack_capture(out, max, ret_addr, false);
  BARRIER();
  (void)copy;
  return n;
}

__attribute__((noipa)) unsigned stack_test_hook_with_own_buffer(uintptr_t *out, unsigned max,
                                                                uintptr_t ret_addr) {
  uintptr_t frames[DEBUG_MAX_FRAMES];
  frames[0] = ret_addr; /* as an earlier capture from the same call site left it */
  BARRIER();
  unsigned n = debug_stack_capture(frames, max, ret_addr, false);
  memcpy(out, frames, n * sizeof(uintptr_t));
  return n;
}

/* An entry point with a frame record (the walk meets ret_addr in it)... */
__attribute__((noipa)) unsigned stack_test_entry_to_copying_hook(uintptr_t *out, unsigned max) {
  unsigned n = stack_test_hook_keeping_a_copy(out, max, (uintptr_t)__builtin_return_address(0));
  BARRIER();
  return n;
}

/* ...and one without (only the scan finds where ret_addr lies). */
__attribute__((noipa, optimize("omit-frame-pointer"))) unsigned
stack_test_entry_to_buffering_hook(uintptr_t *out, unsigned max) {
  unsigned n = stack_test_hook_with_own_buffer(out, max, (uintptr_t)__builtin_return_address(0));
  BARRIER();
  return n;
}

__attribute__((noipa)) unsigned stack_test_hooked(uintptr_t *out, unsigned max, bool own_buffer) {
  unsigned n = own_buffer ? stack_test_entry_to_buffering_hook(out, max)
                          : stack_test_entry_to_copying_hook(out, max);
  BARRIER();
  return n;
}

__attribute__((noipa)) unsigned stack_test_hooked_outer(uintptr_t *out, unsigned max, bool own_buffer) {
  unsigned n = stack_test_hooked(out, max, own_buffer);
  BARRIER();
  return n;
}

static uintptr_t foreign_frames[8];
static unsigned foreign_count;

/* Runs on a stack that is not the thread's (as a coroutine's is). */
__attribute__((noipa)) void stack_test_on_foreign_stack(void) {
  foreign_count = stack_test_entry(foreign_frames, 8, false);
  BARRIER();
}

/* Not exported: dladdr finds its module but no name. */
static __attribute__((noipa)) int unexported_function(int x) {
  BARRIER();
  return x + 1;
}

/* ---- printing and checking ---------------------------------------------------- */

#define OUTPUT_CAP 16384

/* Runs debug_stack_print into a pipe and returns what it wrote. */
static void print_to_string(stack_id_t id, const char *indent, char *out, size_t cap) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  writer_t w;
  writer_init(&w, fds[1]);
  debug_stack_print(&w, id, indent);
  writer_flush(&w);
  close(fds[1]);
  size_t len = 0;
  ssize_t got;
  while (len + 1 < cap && (got = read(fds[0], out + len, cap - 1 - len)) > 0) len += (size_t)got;
  out[len] = '\0';
  close(fds[0]);
}

/* Line `index` (0-based) of `text`, copied into line[]. */
static bool nth_line(const char *text, unsigned index, char *line, size_t cap) {
  for (unsigned i = 0; i < index; i++) {
    text = strchr(text, '\n');
    if (text == NULL) return false;
    text++;
  }
  const char *end = strchr(text, '\n');
  if (end == NULL) return false;
  size_t len = (size_t)(end - text);
  if (len >= cap) len = cap - 1;
  memcpy(line, text, len);
  line[len] = '\0';
  return true;
}

static int find_program_bias(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  *(uintptr_t *)arg = (uintptr_t)info->dlpi_addr;
  return 1; /* the program is listed first */
}

static uintptr_t program_load_bias(void) {
  uintptr_t bias = 0;
  dl_iterate_phdr(find_program_bias, &bias);
  return bias;
}

/* Checks that printed line `index` of `text` names frame `addr`, in
 * `function` at the right offset, in this program at the right offset. */
static void check_frame_line(const char *text, unsigned index, uintptr_t addr, const char *function,
                             uintptr_t function_start) {
  char line[512];
  assert_true(nth_line(text, index, line, sizeof line));
  char expect[256];
  snprintf(expect, sizeof expect, "  #%u %#lx in %s+0x", index, (unsigned long)addr, function);
  if (strncmp(line, expect, strlen(expect)) != 0)
    fail_msg("line %u is '%s', expected '%s...'", index, line, expect);
  unsigned long offset = strtoul(line + strlen(expect), NULL, 16);
  assert_int_equal(function_start + offset, addr - 1);
  assert_non_null(strstr(line, program_invocation_short_name));
  const char *module_offset = strrchr(line, '+');
  assert_non_null(module_offset);
  assert_int_equal(strncmp(module_offset, "+0x", 3), 0);
  assert_int_equal(strtoul(module_offset + 3, NULL, 16), addr - 1 - program_load_bias());
  assert_int_equal(line[strlen(line) - 1], ')');
}

/* A capture through outer -> middle -> leaf -> entry: printed, its first
 * three frames are in leaf, middle and outer, in that order. */
static void check_nested_capture(bool exact, bool entry_has_fp) {
  uintptr_t frames[DEBUG_MAX_FRAMES];
  unsigned n = stack_test_outer(frames, DEBUG_MAX_FRAMES, exact, entry_has_fp);
  assert_true(n >= 4); /* leaf, middle, outer, and this function's caller */
  stack_id_t id = debug_stack_save(frames, n);
  assert_int_not_equal(id, 0);
  char text[OUTPUT_CAP];
  print_to_string(id, "  ", text, sizeof text);
  check_frame_line(text, 0, frames[0], "stack_test_leaf", (uintptr_t)&stack_test_leaf);
  check_frame_line(text, 1, frames[1], "stack_test_middle", (uintptr_t)&stack_test_middle);
  check_frame_line(text, 2, frames[2], "stack_test_outer", (uintptr_t)&stack_test_outer);
}

/* ---- the depot's failure path (first: the depot is still empty) --------------- */

static void test_depot_empty_and_refused_memory(void **state) {
  (void)state;
  const uintptr_t *loaded = (const uintptr_t *)&loaded;
  assert_int_equal(debug_stack_load(0, &loaded), 0);
  assert_int_equal(debug_stack_load(1, &loaded), 0); /* nothing saved yet */
  uintptr_t stack[3] = { 0x1000, 0x2000, 0x3000 };
  os_fail_after(0);
  assert_int_equal(debug_stack_save(stack, 3), 0);
  os_fail_after(-1);
  stack_id_t id = debug_stack_save(stack, 3);
  assert_int_not_equal(id, 0);
  assert_int_equal(debug_stack_load(id, &loaded), 3);
  assert_memory_equal(loaded, stack, sizeof stack);
}

/* A full chunk with the os refusing more: save fails, earlier ids stay. */
static void test_depot_refused_chunk(void **state) {
  (void)state;
  uintptr_t stack[DEBUG_MAX_FRAMES];
  for (unsigned i = 0; i < DEBUG_MAX_FRAMES; i++) stack[i] = 0x7000000 + i;
  stack_id_t first = debug_stack_save(stack, DEBUG_MAX_FRAMES);
  assert_int_not_equal(first, 0);
  os_fail_after(0);
  unsigned saved = 0;
  stack_id_t id;
  /* A chunk holds (1 MiB / 512 bytes) such stacks: one more needs a chunk. */
  do {
    stack[0]++;
    id = debug_stack_save(stack, DEBUG_MAX_FRAMES);
    saved++;
  } while (id != 0 && saved < 4096);
  os_fail_after(-1);
  assert_int_equal(id, 0);
  assert_true(saved <= 2049);
  assert_int_not_equal(debug_stack_save(stack, DEBUG_MAX_FRAMES), 0); /* memory again */
  const uintptr_t *loaded;
  assert_int_equal(debug_stack_load(first, &loaded), DEBUG_MAX_FRAMES);
  assert_int_equal(loaded[0], 0x7000000);
}

/* ---- capture ----------------------------------------------------------------- */

static void test_capture_starts_at_ret_addr(void **state) {
  (void)state;
  uintptr_t frames[8] = { 0 };
  assert_int_equal(debug_stack_capture(frames, 0, 0x1234, false), 0);
  assert_int_equal(frames[0], 0);
  assert_int_equal(debug_stack_capture(frames, 1, 0x1234, false), 1);
  assert_int_equal(frames[0], 0x1234);
  assert_true(debug_stack_capture(frames, 8, 0x5678, false) >= 1);
  assert_int_equal(frames[0], 0x5678);

  unsigned n = stack_test_outer(frames, 8, false, true);
  assert_true(n >= 2 && n <= 8);
  Dl_info info;
  assert_int_not_equal(dladdr((void *)(frames[0] - 1), &info), 0);
  assert_ptr_equal(info.dli_saddr, (void *)&stack_test_leaf);
  /* max is honoured, and a shorter capture is a prefix of a longer one. */
  uintptr_t three[3];
  assert_int_equal(stack_test_outer(three, 3, false, true), 3);
  assert_memory_equal(three + 1, frames + 1, 2 * sizeof(uintptr_t));
}

static void test_fast_capture_names_nested_functions(void **state) {
  (void)state;
  check_nested_capture(false, true);
}

static void test_fast_capture_from_entry_without_frame_pointer(void **state) {
  (void)state;
  check_nested_capture(false, false);
}

/* Captured in one pass with the depot (debug_stack_capture_id), started at
 * the entry point's own frame record or told a wrong one: the same names,
 * and the same frames as the walk that finds the library's frames itself. */
static void test_fast_capture_from_entry_frame(void **state) {
  (void)state;
  uintptr_t found[DEBUG_MAX_FRAMES], from[DEBUG_MAX_FRAMES], wrong[DEBUG_MAX_FRAMES];
  entry_mode = ENTRY_OWN_FRAME;
  check_nested_capture(false, true);
  entry_mode = ENTRY_WRONG_FRAME;
  check_nested_capture(false, true);
  entry_mode = ENTRY_FIND_LIBRARY_FRAMES;
  unsigned n_found = stack_test_outer(found, DEBUG_MAX_FRAMES, false, true);
  entry_mode = ENTRY_OWN_FRAME;
  unsigned n_from = stack_test_outer(from, DEBUG_MAX_FRAMES, false, true);
  entry_mode = ENTRY_WRONG_FRAME;
  unsigned n_wrong = stack_test_outer(wrong, DEBUG_MAX_FRAMES, false, true);
  entry_mode = ENTRY_FIND_LIBRARY_FRAMES;
  assert_int_equal(n_from, n_found);
  assert_int_equal(n_wrong, n_found);
  /* Below this function: its three call sites differ. */
  assert_memory_equal(from, found, 3 * sizeof(uintptr_t));
  assert_memory_equal(wrong, found, 3 * sizeof(uintptr_t));
  entry_mode = ENTRY_WRONG_FRAME;
  assert_int_equal(stack_test_outer(wrong, 2, false, true), 2);
  /* The walk starts at the record it is given. */
  entry_mode = ENTRY_MADE_UP_RECORDS;
  assert_int_equal(stack_test_outer(from, DEBUG_MAX_FRAMES, false, true), 2);
  assert_int_equal(from[0], found[0]);
  assert_int_equal(from[1], MADE_UP_RETURN);
  /* Cut at max as the other walk is. */
  entry_mode = ENTRY_OWN_FRAME;
  assert_int_equal(stack_test_outer(from, 2, false, true), 2);
  assert_int_equal(stack_test_outer(from, 1, false, true), 1);
  entry_mode = ENTRY_FIND_LIBRARY_FRAMES;
}

static void test_exact_capture_names_nested_functions(void **state) {
  (void)state;
  debug_stack_prime();
  check_nested_capture(true, true);
  check_nested_capture(true, false);
  /* Both ways see the same frames where both see them (below this
   * function: its two call sites differ). */
  uintptr_t fast[DEBUG_MAX_FRAMES], exact[DEBUG_MAX_FRAMES];
  assert_true(stack_test_outer(fast, DEBUG_MAX_FRAMES, false, true) >= 4);
  assert_true(stack_test_outer(exact, DEBUG_MAX_FRAMES, true, true) >= 4);
  assert_memory_equal(fast, exact, 3 * sizeof(uintptr_t));
}

/* rbp holding junk when the capture starts: the walk ends at once. */
static void test_garbage_frame_pointer(void **state) {
  (void)state;
  static uintptr_t not_on_the_stack[4];
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  uintptr_t junk[] = {
    0, 1, 0xdeadbeef, (uintptr_t)-8, (uintptr_t)-4096, (uintptr_t)not_on_the_stack,
    here - 4096,              /* below the current frame */
    here + 3,                 /* misaligned */
    (uintptr_t)1 << 46,       /* far away */
  };
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
    uintptr_t frames[8] = { 0 };
    unsigned n = stack_test_with_rbp(frames, 8, junk[i]);
    assert_int_equal(n, 1);
    Dl_info info;
    assert_int_not_equal(dladdr((void *)(frames[0] - 1), &info), 0);
    assert_ptr_equal(info.dli_saddr, (void *)&stack_test_with_rbp);
  }
}

/* Copies of ret_addr below its real slot: a frame keeping one, and the
 * caller's frames buffer, must not make the library's frames show. */
static void test_stale_copies_of_ret_addr(void **state) {
  (void)state;
  /* Unoptimised, the hook keeps its ret_addr argument on the stack too; with
   * an entry point that has no frame record, nothing can tell that copy from
   * the real slot (debug_stack.h says so), so only the buffer case needs an
   * optimised build. */
#ifdef __OPTIMIZE__
  int cases = 2;
#else
  int cases = 1;
#endif
  for (int own_buffer = 0; own_buffer < cases; own_buffer++) {
    uintptr_t frames[8];
    unsigned n = stack_test_hooked_outer(frames, 8, own_buffer);
    assert_true(n >= 3);
    Dl_info info;
    assert_int_not_equal(dladdr((void *)(frames[0] - 1), &info), 0);
    assert_ptr_equal(info.dli_saddr, (void *)&stack_test_hooked);
    assert_int_not_equal(dladdr((void *)(frames[1] - 1), &info), 0);
    assert_ptr_equal(info.dli_saddr, (void *)&stack_test_hooked_outer);
  }
}

/* A capture on a stack outside the thread's (here a ucontext stack with a
 * guard page above) keeps only frames[0] and reads nothing there. */
static void test_capture_on_a_foreign_stack(void **state) {
  (void)state;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = 16 * page;
  uint8_t *map = mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(map != MAP_FAILED);
  assert_int_equal(mprotect(map + size, page, PROT_NONE), 0);
  static ucontext_t caller, foreign;
  assert_int_equal(getcontext(&foreign), 0);
  foreign.uc_stack.ss_sp = map;
  foreign.uc_stack.ss_size = size;
  foreign.uc_link = &caller;
  makecontext(&foreign, stack_test_on_foreign_stack, 0);
  foreign_count = 0;
  assert_int_equal(swapcontext(&caller, &foreign), 0);
  munmap(map, size + page);
  assert_int_equal(foreign_count, 1);
  Dl_info info;
  assert_int_not_equal(dladdr((void *)(foreign_frames[0] - 1), &info), 0);
  assert_ptr_equal(info.dli_saddr, (void *)&stack_test_on_foreign_stack);
}

/* ---- a made-up frame chain on a thread stack with a guard page above ----------- */

#define CHAIN_STACK_BYTES ((size_t)4 << 20)
/* debug_stack.c's DEBUG_MAX_FRAME_STEP: the longest step the walk follows. */
#define WALK_MAX_STEP ((uintptr_t)1 << 20)
/* Pushes the chain this far below the stack's top, so a step longer than
 * WALK_MAX_STEP still lands inside the stack. */
#define CHAIN_DEPTH_BYTES ((size_t)3 << 19)
#define FAKE_RET(i) ((uintptr_t)0x51000 + 16 * (uintptr_t)(i))
#define CHAIN_RECORDS 6
#define CHAIN_WORDS (2 * CHAIN_RECORDS + 4)

typedef struct chain_thread {
  uintptr_t stack_hi;
  uint8_t *deep_area; /* memory high in the stack, far above the chain */
  int failures;
} chain_thread_t;

typedef struct chain_case {
  uintptr_t last_link; /* the link of the last record */
  uintptr_t tail[4];   /* the words just past the records */
  unsigned expect;     /* fake frames the walk must report */
  unsigned max;
} chain_case_t;

/* Links CHAIN_RECORDS records, the last one's link given by the case, and
 * checks the walk reports exactly the expected fake frames. */
static bool check_chain(uintptr_t *chain, const chain_case_t *c) {
  for (unsigned i = 0; i < CHAIN_RECORDS; i++) {
    chain[2 * i] = (uintptr_t)&chain[2 * i + 2];
    chain[2 * i + 1] = FAKE_RET(i);
  }
  chain[2 * (CHAIN_RECORDS - 1)] = c->last_link;
  memcpy(&chain[2 * CHAIN_RECORDS], c->tail, sizeof c->tail);
  uintptr_t frames[DEBUG_MAX_FRAMES];
  unsigned n = stack_test_with_rbp(frames, c->max, (uintptr_t)chain);
  bool ok = n == 1 + c->expect;
  for (unsigned i = 0; ok && i < c->expect; i++) ok = frames[1 + i] == FAKE_RET(i);
  if (!ok)
    fprintf(stderr, "chain ending in %#lx: %u frames, expected %u\n", (unsigned long)c->last_link, n,
            1 + c->expect);
  return ok;
}

/* With `deep`, the chain lies over WALK_MAX_STEP below the stack's top
 * and only an over-long step is tried; otherwise it lies near the top, so
 * that only the bounds check keeps the walk from reading past it. */
static __attribute__((noipa)) void run_chain_checks(chain_thread_t *t, bool deep) {
  uintptr_t chain[CHAIN_WORDS];
  uintptr_t top = t->stack_hi;
  uintptr_t next = (uintptr_t)&chain[2 * CHAIN_RECORDS];
  if (deep) {
    /* A valid-looking record far up, so following an over-long step shows. */
    uintptr_t far = ((uintptr_t)&chain[CHAIN_WORDS] + WALK_MAX_STEP + 64) & ~(uintptr_t)15;
    if (far + 16 > top || far < (uintptr_t)t->deep_area) {
      t->failures++;
      return;
    }
    ((uintptr_t *)far)[0] = 0;
    ((uintptr_t *)far)[1] = FAKE_RET(CHAIN_RECORDS);
    chain_case_t step = { far, { 0 }, CHAIN_RECORDS, DEBUG_MAX_FRAMES };
    if (!check_chain(chain, &step)) t->failures++;
    return;
  }
  if (top - (uintptr_t)chain > WALK_MAX_STEP) { /* the cases at the top would test nothing */
    t->failures++;
    return;
  }
  /* Read at a 4-byte offset, these make a nonzero return address. */
  uintptr_t pattern = 0x0000000100000001ull;
  chain_case_t cases[] = {
    { 0, { 0 }, CHAIN_RECORDS, DEBUG_MAX_FRAMES },
    { (uintptr_t)&chain[0], { 0 }, CHAIN_RECORDS, DEBUG_MAX_FRAMES },                       /* a loop */
    { (uintptr_t)&chain[2 * (CHAIN_RECORDS - 1)], { 0 }, CHAIN_RECORDS, DEBUG_MAX_FRAMES }, /* itself */
    { next + 4, { pattern, pattern, pattern, pattern }, CHAIN_RECORDS, DEBUG_MAX_FRAMES }, /* misaligned */
    { top - 8, { 0 }, CHAIN_RECORDS, DEBUG_MAX_FRAMES },  /* its record would cross the top */
    { top, { 0 }, CHAIN_RECORDS, DEBUG_MAX_FRAMES },
    { top + 4096, { 0 }, CHAIN_RECORDS, DEBUG_MAX_FRAMES }, /* beyond the guard page */
    /* Sound links are followed: one more record, ending with link 0. */
    { next, { 0, FAKE_RET(CHAIN_RECORDS), 0, 0 }, CHAIN_RECORDS + 1, DEBUG_MAX_FRAMES },
    /* A return address of 0 ends the stack. */
    { next, { next + 16, 0, 0, FAKE_RET(99) }, CHAIN_RECORDS, DEBUG_MAX_FRAMES },
    /* max cuts the walk. */
    { 0, { 0 }, 3, 4 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (!check_chain(chain, &cases[i])) t->failures++;
}

static __attribute__((noipa)) void run_deep_chain_checks(chain_thread_t *t) {
  /* Occupies the stack's top part, so the chain lies deep below it. */
  uint8_t deep[CHAIN_DEPTH_BYTES];
  memset(deep, 0, sizeof deep);
  t->deep_area = deep;
  BARRIER();
  run_chain_checks(t, true);
  BARRIER();
}

/* No cmocka asserts here: they would jump out of this thread. */
static void *chain_thread_main(void *arg) {
  chain_thread_t *t = arg;
  run_chain_checks(t, false);
  run_deep_chain_checks(t);
  return NULL;
}

static void test_broken_chains_stay_inside_the_stack(void **state) {
  (void)state;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uint8_t *map =
    mmap(NULL, CHAIN_STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(map != MAP_FAILED);
  /* Reading past the stack's top faults. */
  assert_int_equal(mprotect(map + CHAIN_STACK_BYTES, page, PROT_NONE), 0);
  pthread_attr_t attr;
  assert_int_equal(pthread_attr_init(&attr), 0);
  assert_int_equal(pthread_attr_setstack(&attr, map, CHAIN_STACK_BYTES), 0);
  chain_thread_t t = { .stack_hi = (uintptr_t)map + CHAIN_STACK_BYTES };
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, &attr, chain_thread_main, &t), 0);
  assert_int_equal(pthread_join(thread, NULL), 0);
  pthread_attr_destroy(&attr);
  munmap(map, CHAIN_STACK_BYTES + page);
  assert_int_equal(t.failures, 0);
}

/* ---- the depot ---------------------------------------------------------------- */

static void test_depot_keeps_one_id_per_stack(void **state) {
  (void)state;
  uintptr_t a[4] = { 0x11, 0x22, 0x33, 0x44 };
  uintptr_t b[4] = { 0x11, 0x22, 0x33, 0x45 };
  uintptr_t a_copy[4];
  memcpy(a_copy, a, sizeof a);
  stack_id_t id_a = debug_stack_save(a, 4);
  assert_true(id_a >= 1);
  assert_int_equal(debug_stack_save(a_copy, 4), id_a);
  stack_id_t id_b = debug_stack_save(b, 4);
  assert_int_not_equal(id_b, 0);
  assert_int_not_equal(id_b, id_a);
  stack_id_t id_prefix = debug_stack_save(a, 3);
  assert_int_not_equal(id_prefix, 0);
  assert_int_not_equal(id_prefix, id_a);
  assert_int_equal(debug_stack_save(a, 0), 0);

  const uintptr_t *loaded;
  assert_int_equal(debug_stack_load(id_a, &loaded), 4);
  assert_memory_equal(loaded, a, sizeof a);
  assert_int_equal(debug_stack_load(id_b, &loaded), 4);
  assert_memory_equal(loaded, b, sizeof b);
  assert_int_equal(debug_stack_load(id_prefix, &loaded), 3);
  assert_memory_equal(loaded, a, 3 * sizeof(uintptr_t));
  assert_int_equal(debug_stack_load(0, &loaded), 0);
  assert_int_equal(debug_stack_load(UINT32_MAX, &loaded), 0);

  /* Longer stacks are kept to DEBUG_MAX_FRAMES. */
  uintptr_t longer[DEBUG_MAX_FRAMES + 5];
  for (unsigned i = 0; i < DEBUG_MAX_FRAMES + 5; i++) longer[i] = 0x900 + i;
  stack_id_t id_long = debug_stack_save(longer, DEBUG_MAX_FRAMES + 5);
  assert_int_equal(debug_stack_load(id_long, &loaded), DEBUG_MAX_FRAMES);
  assert_int_equal(debug_stack_save(longer, DEBUG_MAX_FRAMES), id_long);
}

#define SAVE_THREADS 4
#define SAVES_PER_THREAD 10000
#define SHARED_KEYS 500

/* A distinct stack for each key: 1 to 8 frames. */
static unsigned stack_for_key(uint64_t key, uintptr_t *frames) {
  unsigned n = 1 + (unsigned)(key % 8);
  for (unsigned i = 0; i < n; i++) frames[i] = (uintptr_t)(0x400000 + key * 64 + i);
  return n;
}

static uint64_t key_for(unsigned thread, unsigned i) {
  return i % 4 == 0 ? (i / 4) % SHARED_KEYS : 1000000 + (uint64_t)thread * 100000 + i;
}

typedef struct save_thread {
  unsigned index;
  pthread_barrier_t *start;
  stack_id_t ids[SAVES_PER_THREAD];
} save_thread_t;

static void *save_thread_main(void *arg) {
  save_thread_t *t = arg;
  pthread_barrier_wait(t->start);
  for (unsigned i = 0; i < SAVES_PER_THREAD; i++) {
    uintptr_t frames[8];
    unsigned n = stack_for_key(key_for(t->index, i), frames);
    t->ids[i] = debug_stack_save(frames, n);
  }
  return NULL;
}

static void test_depot_concurrent_saves(void **state) {
  (void)state;
  static save_thread_t threads[SAVE_THREADS];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, SAVE_THREADS);
  pthread_t handles[SAVE_THREADS];
  for (unsigned t = 0; t < SAVE_THREADS; t++) {
    threads[t].index = t;
    threads[t].start = &start;
    assert_int_equal(pthread_create(&handles[t], NULL, save_thread_main, &threads[t]), 0);
  }
  for (unsigned t = 0; t < SAVE_THREADS; t++) assert_int_equal(pthread_join(handles[t], NULL), 0);
  pthread_barrier_destroy(&start);

  stack_id_t shared_ids[SHARED_KEYS] = { 0 };
  for (unsigned t = 0; t < SAVE_THREADS; t++) {
    for (unsigned i = 0; i < SAVES_PER_THREAD; i++) {
      uint64_t key = key_for(t, i);
      stack_id_t id = threads[t].ids[i];
      assert_int_not_equal(id, 0);
      /* The id names this key's stack, so different keys got different ids. */
      uintptr_t expect[8];
      unsigned n = stack_for_key(key, expect);
      const uintptr_t *loaded;
      assert_int_equal(debug_stack_load(id, &loaded), n);
      assert_memory_equal(loaded, expect, n * sizeof(uintptr_t));
      if (key < SHARED_KEYS) {
        if (shared_ids[key] == 0) shared_ids[key] = id;
        assert_int_equal(id, shared_ids[key]);
      }
      if (i % 97 == 0) assert_int_equal(debug_stack_save(expect, n), id); /* found again */
    }
  }
}

/* ---- printing ----------------------------------------------------------------- */

static void test_print_forms(void **state) {
  (void)state;
  char text[OUTPUT_CAP];
  print_to_string(0, "    ", text, sizeof text);
  assert_string_equal(text, "    (no stack recorded)\n");

  uintptr_t unnamed = (uintptr_t)&unexported_function + 1; /* a return address inside it */
  uintptr_t frames[2] = { unnamed, 0x10 };
  stack_id_t id = debug_stack_save(frames, 2);
  assert_int_not_equal(id, 0);
  print_to_string(id, "", text, sizeof text);
  char expect[512];
  snprintf(expect, sizeof expect, "#0 %#lx (", (unsigned long)unnamed);
  char line[512];
  assert_true(nth_line(text, 0, line, sizeof line));
  assert_int_equal(strncmp(line, expect, strlen(expect)), 0);
  assert_null(strstr(line, " in "));
  assert_non_null(strstr(line, program_invocation_short_name));
  snprintf(expect, sizeof expect, "+%#lx)", (unsigned long)(unnamed - 1 - program_load_bias()));
  assert_non_null(strstr(line, expect));
  assert_true(nth_line(text, 1, line, sizeof line));
  assert_string_equal(line, "#1 0x10");
  assert_false(nth_line(text, 2, line, sizeof line));
}

/* ---- cost ----------------------------------------------------------------------- */

static double ns_per_capture(bool exact, unsigned rounds) {
  uintptr_t frames[8];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned i = 0; i < rounds; i++) stack_test_recurse(12, frames, 8, exact);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
  return ns / rounds;
}

/* Reports, does not judge: 13 nested calls, 8 frames kept; the figure
 * includes the 13 calls. */
static void test_capture_cost(void **state) {
  (void)state;
  uintptr_t frames[8];
  assert_int_equal(stack_test_recurse(12, frames, 8, false), 8);
  assert_int_equal(stack_test_recurse(12, frames, 8, true), 8);
  print_message("capture, 8 frames: fast %.0f ns, exact %.0f ns\n", ns_per_capture(false, 200000),
                ns_per_capture(true, 20000));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_depot_empty_and_refused_memory),
    cmocka_unit_test(test_depot_refused_chunk),
    cmocka_unit_test(test_capture_starts_at_ret_addr),
    cmocka_unit_test(test_fast_capture_names_nested_functions),
    cmocka_unit_test(test_fast_capture_from_entry_without_frame_pointer),
    cmocka_unit_test(test_fast_capture_from_entry_frame),
    cmocka_unit_test(test_exact_capture_names_nested_functions),
    cmocka_unit_test(test_garbage_frame_pointer),
    cmocka_unit_test(test_stale_copies_of_ret_addr),
    cmocka_unit_test(test_capture_on_a_foreign_stack),
    cmocka_unit_test(test_broken_chains_stay_inside_the_stack),
    cmocka_unit_test(test_depot_keeps_one_id_per_stack),
    cmocka_unit_test(test_depot_concurrent_saves),
    cmocka_unit_test(test_print_forms),
    cmocka_unit_test(test_capture_cost),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

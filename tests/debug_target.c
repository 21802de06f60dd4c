/*
 * debug_target.c: a program that is not linked with libgpa, run under the
 * preload with GPA_OPTIONS by tests/debug_exit.sh.  Each mode does one
 * thing the exit report or a misuse report must describe.
 *
 *   debug_target MODE
 *     clean        allocate and free, nothing left
 *     global       a block held by a global: still reachable, not a leak
 *     list         a 5-node list whose head pointer is dropped: one direct
 *                  leak (the head) and four indirect ones
 *     double-free  malloc in alloc_here, free in free_first, free_second
 *     overflow     one byte written past a 24-byte block, then freed
 *     print-leak   prints a line to stdout (buffered), leaks one block
 *     fork         threads allocating while the main thread forks; the child
 *                  allocates and exits
 *     threads-exit 16 short-lived threads, each leaking one 48-byte block in
 *                  leak_in_thread, while two others go on allocating and
 *                  freeing through the exit report
 *     thread-stack one thread leaks a 48-byte block (alloc_in_thread) whose
 *                  only pointer it keeps on its own stack, and ends last:
 *                  the C library keeps that stack for reuse, unscrubbed
 *     register     a thread still running at exit holds its block's only
 *                  pointer in a register (r15): not a leak
 *     big-aligned  blocks aligned to 2, 4, 8 and 64 MiB through
 *                  posix_memalign, aligned_alloc and memalign: sized,
 *                  reallocated and freed (a line on stderr for each step
 *                  that goes wrong), and one 300-byte block of them leaked
 *                  in leak_aligned
 */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noipa)) /* no inlining, no specialised clones: the names must show */
#define BARRIER() __asm__ volatile("" ::: "memory")

struct node {
  struct node *next;
  long payload[3];
};

void *volatile global_block;

NOINLINE void keep_in_global(void) {
  global_block = malloc(200);
  BARRIER();
}

NOINLINE struct node *make_list(int n) {
  struct node *head = NULL;
  for (int i = 0; i < n; i++) {
    struct node *e = malloc(sizeof *e);
    e->next = head;
    e->payload[0] = i;
    head = e;
  }
  return head;
}

/* Drops the list: its head lives only in this frame, which returns. */
NOINLINE void build_and_drop_list(void) {
  struct node *volatile head = make_list(5);
  (void)head;
  BARRIER();
}

/* Overwrite dead stack below the caller, where copies of dropped pointers
 * may linger. */
NOINLINE void scrub_stack(void) {
  volatile char junk[16384];
  memset((char *)junk, 0, sizeof junk);
  BARRIER();
}

NOINLINE void *alloc_here(size_t n) {
  void *p = malloc(n);
  BARRIER();
  return p;
}

NOINLINE void free_first(void *p) {
  free(p);
  BARRIER();
}

NOINLINE void free_second(void *p) {
  free(p);
  BARRIER();
}

static void *churn(void *arg) {
  volatile int *stop = arg;
  while (!*stop) {
    char *p = malloc(64);
    *(volatile char *)p = 1; /* keeps the pair from being optimised away */
    free(p);
  }
  return NULL;
}

/* The block's only pointer is dropped when this returns, and its frame
 * scrubbed by the caller: the thread's stack is reused by the next. */
NOINLINE void leak_in_thread(void) {
  void *volatile p = malloc(48);
  (void)p;
  BARRIER();
}

static void *leaking_thread(void *arg) {
  (void)arg;
  leak_in_thread();
  scrub_stack();
  return NULL;
}

/* Threads that end (their heaps go back to the pool) and threads that are
 * still allocating when main returns: the report at exit waits for their
 * calls under way, holds back their next ones, and must find the leaks of
 * the threads that ended. */
static void leak_in_threads_then_exit(void) {
  static volatile int never_stop = 0;
  pthread_t churner[2];
  for (int i = 0; i < 2; i++) pthread_create(&churner[i], NULL, churn, (void *)&never_stop);
  for (int i = 0; i < 16; i++) {
    pthread_t t;
    pthread_create(&t, NULL, leaking_thread, NULL);
    pthread_join(t, NULL);
  }
}

NOINLINE void *alloc_in_thread(void) {
  void *p = malloc(48);
  BARRIER();
  return p;
}

/* Deeper in the thread's stack than the thread's own exit (key destructors,
 * the heap's release) reaches, and within the 16 KiB (PTHREAD_STACK_MIN)
 * below it that glibc keeps when it hands the rest of a dead thread's stack
 * back to the kernel (MADV_DONTNEED): the pointer outlives the thread
 * there.  8 KiB. */
#define DEEP_FRAME_WORDS 1024

/* The pointer stays at the bottom of this frame when the thread ends: only
 * the cached stack of a thread that no longer runs still holds it. */
NOINLINE void keep_deep_in_own_stack(void) {
  volatile uintptr_t frame[DEEP_FRAME_WORDS];
  frame[0] = (uintptr_t)alloc_in_thread();
  (void)frame[0];
  BARRIER();
}

static void *hold_on_own_stack(void *arg) {
  (void)arg;
  keep_deep_in_own_stack();
  return NULL;
}

static void leak_on_a_dead_threads_stack(void) {
  pthread_t t;
  pthread_create(&t, NULL, hold_on_own_stack, NULL);
  pthread_join(t, NULL);
}

/* Set by hold_in_register once its block's only pointer is in r15. */
volatile int held_in_register_ready;
void *hold_in_register(void *arg);

/* A thread that mallocs 48 bytes, keeps the pointer in r15 alone (the dead
 * stack below it zeroed, where malloc's frames left copies), says so, and
 * spins until the process exits. */
__asm__(".pushsection .text\n"
        ".globl hold_in_register\n"
        ".type hold_in_register, @function\n"
        "hold_in_register:\n"
        "  push %r15\n" /* the stack aligned for the call */
        "  mov $48, %edi\n"
        "  call malloc@PLT\n"
        "  mov %rax, %r15\n"
        "  xor %eax, %eax\n"
        "  lea -16384(%rsp), %rdi\n"
        "  mov $2048, %ecx\n"
        "  rep stosq\n"
        "  movl $1, held_in_register_ready(%rip)\n"
        "1:\n"
        "  pause\n"
        "  jmp 1b\n"
        ".size hold_in_register, .-hold_in_register\n"
        ".popsection\n");

static void block_held_in_a_register(void) {
  pthread_t t;
  pthread_create(&t, NULL, hold_in_register, NULL);
  while (!held_in_register_ready) sched_yield();
  scrub_stack();
}

#define MIB ((size_t)1 << 20)

/* Drops its block: the pointer lives only in this frame, scrubbed after. */
NOINLINE void leak_aligned(void) {
  void *volatile p = aligned_alloc(8 * MIB, 300);
  (void)p;
  BARRIER();
}

static int aligned_step_failed(const char *how, size_t align, const char *what) {
  fprintf(stderr, "big-aligned: %s, aligned to %zu: %s failed\n", how, align, what);
  return 1;
}

/* One aligned block through the family: its alignment, size, a realloc
 * that moves it (malloc's alignment) with the bytes kept, and the free. */
static int use_aligned(const char *how, size_t align, unsigned char *p) {
  if (p == NULL || (uintptr_t)p % align != 0) return aligned_step_failed(how, align, "the allocation");
  memset(p, 'b', 1001);
  if (malloc_usable_size(p) != 1001) return aligned_step_failed(how, align, "malloc_usable_size");
  unsigned char *q = realloc(p, 3000);
  if (q == NULL) return aligned_step_failed(how, align, "realloc");
  for (size_t k = 0; k < 1001; k++)
    if (q[k] != 'b') return aligned_step_failed(how, align, "realloc's copy");
  free(q);
  return 0;
}

static int big_alignments(void) {
  static const size_t aligns[] = {2 * MIB, 4 * MIB, 8 * MIB, 64 * MIB};
  int failures = 0;
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    size_t align = aligns[i];
    void *p = NULL;
    if (posix_memalign(&p, align, 1001) != 0) p = NULL;
    failures += use_aligned("posix_memalign", align, p);
    failures += use_aligned("aligned_alloc", align, aligned_alloc(align, 1001));
    failures += use_aligned("memalign", align, memalign(align, 1001));
    void *f = memalign(align, 1001);
    free(f); /* a plain free too, without a realloc first */
  }
  leak_aligned();
  scrub_stack();
  return failures;
}

static int fork_while_allocating(void) {
  pthread_t t[2];
  volatile int stop = 0;
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, (void *)&stop);
  int failures = 0;
  for (int round = 0; round < 20; round++) {
    pid_t pid = fork();
    if (pid == 0) {
      void *p = malloc(100);
      free(p);
      _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop = 1;
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  return failures;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: debug_target MODE\n");
    return 2;
  }
  const char *mode = argv[1];
  if (strcmp(mode, "clean") == 0) {
    for (int i = 0; i < 1000; i++) free(alloc_here((size_t)i));
  } else if (strcmp(mode, "global") == 0) {
    keep_in_global();
  } else if (strcmp(mode, "list") == 0) {
    build_and_drop_list();
    scrub_stack();
  } else if (strcmp(mode, "double-free") == 0) {
    void *p = alloc_here(24);
    free_first(p);
    free_second(p);
  } else if (strcmp(mode, "overflow") == 0) {
    char *p = alloc_here(24);
    memset(p, 'a', 25);
    free_first(p);
  } else if (strcmp(mode, "print-leak") == 0) {
    printf("the program's own output");
    alloc_here(48);
    scrub_stack();
  } else if (strcmp(mode, "register") == 0) {
    block_held_in_a_register();
  } else if (strcmp(mode, "big-aligned") == 0) {
    big_alignments();
  } else if (strcmp(mode, "thread-stack") == 0) {
    leak_on_a_dead_threads_stack();
  } else if (strcmp(mode, "threads-exit") == 0) {
    leak_in_threads_then_exit();
  } else if (strcmp(mode, "fork") == 0) {
    int failures = fork_while_allocating();
    printf("fork children failed: %d\n", failures);
    return failures != 0;
  } else {
    fprintf(stderr, "debug_target: unknown mode %s\n", mode);
    return 2;
  }
  return 0;
}

/*
 * debug_threads.c: holding the other threads still, with their registers
 * in memory, for the exit report's scan (see debug_threads.h).
 */
#include "debug_threads.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "debug_stack.h"
#include "os.h"

/* A real-time signal near the top of the range: programs that use
 * real-time signals count up from SIGRTMIN, and the C library keeps the
 * ones below it. */
#define DEBUG_STOP_SIGNAL (SIGRTMAX - 3)

/* How long the stop waits for threads to answer (a thread that has ended
 * meanwhile is not waited for), and the resume for them to leave their
 * handlers. */
#define STOP_ANSWER_NS (500 * 1000 * 1000L)
#define STOP_LEAVE_NS (1000 * 1000 * 1000L)

/* Threads that may start between the count and the signals. */
#define STOP_SPARE_SLOTS 16

/* The registers the kernel saves for a thread, as words. */
#define REGISTER_WORDS (sizeof(gregset_t) / sizeof(uintptr_t))

static struct {
  uintptr_t *registers;          /* REGISTER_WORDS per slot */
  pid_t *sent_to;                /* the threads signalled, `sent` of them */
  _Atomic(pid_t) *answered_by;   /* per slot: the thread that filled it */
  size_t slots, bytes;
  _Atomic(size_t) next_slot;
  _Atomic(uint32_t) sent, answered, left;
  _Atomic(uint32_t) released;    /* a futex word: 1 once the scan is done */
  _Atomic(bool) active;
  struct sigaction previous;     /* the program's action, given back after */
} stop;

static void on_stop_signal(int sig, siginfo_t *info, void *context) {
  (void)sig;
  /* Only our own stop, sent by tgkill from this process. */
  if (!atomic_load(&stop.active) || info->si_code != SI_TKILL || info->si_pid != getpid()) return;
  int saved_errno = errno;
  const ucontext_t *uc = context;
  size_t slot = atomic_fetch_add(&stop.next_slot, 1);
  if (slot < stop.slots) {
    for (size_t i = 0; i < REGISTER_WORDS; i++)
      stop.registers[slot * REGISTER_WORDS + i] = (uintptr_t)uc->uc_mcontext.gregs[i];
    atomic_store(&stop.answered_by[slot], (pid_t)syscall(SYS_gettid));
  }
  atomic_fetch_add(&stop.answered, 1);
  while (atomic_load(&stop.released) == 0) os_wait_while_equal(&stop.released, 0);
  atomic_fetch_add(&stop.left, 1);
  errno = saved_errno;
}

/* ---- the threads ------------------------------------------------------------- */

/* linux_dirent64, as getdents64(2) returns it. */
struct task_entry {
  uint64_t inode;
  int64_t offset;
  unsigned short length;
  unsigned char type;
  char name[];
};

/* Calls `each` with every thread id of the process but the caller's;
 * returns how many it was called for (0 when the list cannot be read). */
static size_t for_each_other_thread(void (*each)(pid_t tid)) {
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  pid_t self = (pid_t)syscall(SYS_gettid);
  size_t count = 0;
  char buffer[4096] __attribute__((aligned(8)));
  for (;;) {
    long got = syscall(SYS_getdents64, fd, buffer, sizeof buffer);
    if (got <= 0) break;
    for (long at = 0; at < got;) {
      const struct task_entry *e = (const struct task_entry *)(buffer + at);
      at += e->length;
      pid_t tid = 0;
      const char *c = e->name;
      for (; *c >= '0' && *c <= '9'; c++) tid = tid * 10 + (*c - '0');
      if (*c != '\0' || tid == 0 || tid == self) continue; /* ".", ".." */
      if (each != NULL) each(tid);
      count++;
    }
  }
  close(fd);
  return count;
}

static void send_stop(pid_t tid) {
  uint32_t sent = atomic_load(&stop.sent);
  if (sent == stop.slots) return; /* more threads than counted: the rest run on */
  if (syscall(SYS_tgkill, getpid(), tid, DEBUG_STOP_SIGNAL) != 0) return;
  stop.sent_to[sent] = tid;
  atomic_store(&stop.sent, sent + 1);
}

static bool has_answered(pid_t tid) {
  size_t filled = atomic_load(&stop.next_slot);
  for (size_t i = 0; i < filled && i < stop.slots; i++)
    if (atomic_load(&stop.answered_by[i]) == tid) return true;
  return false;
}

/* Whether a signalled thread may still answer: it has not, and it still
 * exists (a thread that was ending, its signals blocked, is gone soon). */
static bool answer_pending(void) {
  uint32_t sent = atomic_load(&stop.sent);
  if (atomic_load(&stop.answered) >= sent) return false;
  for (uint32_t i = 0; i < sent; i++) {
    pid_t tid = stop.sent_to[i];
    if (!has_answered(tid) && syscall(SYS_tgkill, getpid(), tid, 0) == 0) return true;
  }
  return false;
}

static long elapsed_ns(const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

/* Until *counter reaches `want`, or `limit_ns` passes. */
static void wait_for_count(_Atomic(uint32_t) *counter, uint32_t want, long limit_ns) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (atomic_load(counter) < want && elapsed_ns(&start) < limit_ns) sched_yield();
}

size_t debug_threads_stop(void) {
  size_t others = for_each_other_thread(NULL);
  if (others == 0) return 0;
  size_t page = os_page_size();
  stop.slots = others + STOP_SPARE_SLOTS;
  size_t per_slot = REGISTER_WORDS * sizeof(uintptr_t) + 2 * sizeof(pid_t);
  stop.bytes = (stop.slots * per_slot + page - 1) & ~(page - 1);
  stop.registers = os_reserve_aligned(stop.bytes, page);
  if (stop.registers == NULL) return 0;
  stop.sent_to = (pid_t *)(stop.registers + stop.slots * REGISTER_WORDS);
  stop.answered_by = (_Atomic(pid_t) *)(stop.sent_to + stop.slots);
  atomic_store(&stop.next_slot, 0);
  atomic_store(&stop.sent, 0);
  atomic_store(&stop.answered, 0);
  atomic_store(&stop.left, 0);
  atomic_store(&stop.released, 0);
  atomic_store(&stop.active, true);
  struct sigaction ours = {0};
  ours.sa_sigaction = on_stop_signal;
  ours.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&ours.sa_mask); /* nothing else runs on top of a stopped thread */
  struct sigaction previous;
  if (sigaction(DEBUG_STOP_SIGNAL, &ours, &previous) != 0) {
    atomic_store(&stop.active, false);
    os_release(stop.registers, stop.bytes);
    stop.registers = NULL;
    return 0;
  }
  /* The program's, unless ours stayed from an earlier stop. */
  bool was_ours = (previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction == on_stop_signal;
  if (!was_ours) stop.previous = previous;
  for_each_other_thread(send_stop);
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (answer_pending() && elapsed_ns(&start) < STOP_ANSWER_NS) sched_yield();
  return atomic_load(&stop.answered);
}

void debug_threads_resume(void) {
  if (stop.registers == NULL) return;
  atomic_store(&stop.released, 1);
  os_wake_all(&stop.released);
  uint32_t answered = atomic_load(&stop.answered);
  wait_for_count(&stop.left, answered, STOP_LEAVE_NS);
  bool all_back = atomic_load(&stop.left) == answered && answered == atomic_load(&stop.sent);
  atomic_store(&stop.active, false);
  /* The program's own handler comes back.  Where it had none, ours stays:
   * a stop still pending in a thread that blocks it would otherwise, under
   * the default action, end the process once unblocked. */
  void (*previous)(int) = stop.previous.sa_handler;
  if ((stop.previous.sa_flags & SA_SIGINFO) != 0 || (previous != SIG_DFL && previous != SIG_IGN))
    sigaction(DEBUG_STOP_SIGNAL, &stop.previous, NULL);
  /* A thread that answers late could still write here: keep it then. */
  if (all_back) os_release(stop.registers, stop.bytes);
  stop.registers = NULL;
}

/* ---- ended threads' stacks ------------------------------------------------------ */

/* Ended stacks remembered at once.  The C library caches up to 40 MiB of
 * them: 1024 covers its cache for stacks down to 40 KiB.  One past that is
 * scanned like any other memory, as before it was noted. */
#define ENDED_STACK_SLOTS 1024

/* A slot is free while lo is 0.  Taken by a compare-and-swap of lo, then
 * filled by a store of hi; emptied hi first: readers take a slot only with
 * both set. */
static struct {
  _Atomic(uintptr_t) lo, hi;
} ended[ENDED_STACK_SLOTS];

void debug_threads_started(void) {
  uintptr_t lo, hi;
  if (!debug_stack_thread_bounds(true, &lo, &hi)) return;
  for (size_t i = 0; i < ENDED_STACK_SLOTS; i++) {
    uintptr_t slot_lo = atomic_load(&ended[i].lo), slot_hi = atomic_load(&ended[i].hi);
    if (slot_lo == 0 || slot_lo >= hi || slot_hi <= lo) continue;
    atomic_store(&ended[i].hi, 0);
    atomic_compare_exchange_strong(&ended[i].lo, &slot_lo, 0);
  }
}

void debug_threads_ended(void) {
  uintptr_t lo, hi;
  if (!debug_stack_thread_bounds(false, &lo, &hi)) return;
  /* Up to the thread's descriptor (the thread pointer; the static TLS lies
   * below it): the C library keeps the descriptor with the stack, and the
   * blocks it points to (the TLS vector) for the next thread. */
  uintptr_t self = (uintptr_t)pthread_self();
  if (self > lo && self < hi) hi = self;
  /* The C library runs the exit's destructors again when one allocates:
   * the stack may be noted already. */
  for (size_t i = 0; i < ENDED_STACK_SLOTS; i++) {
    if (atomic_load(&ended[i].lo) == lo) {
      atomic_store(&ended[i].hi, hi);
      return;
    }
  }
  for (size_t i = 0; i < ENDED_STACK_SLOTS; i++) {
    uintptr_t free_slot = 0;
    if (atomic_compare_exchange_strong(&ended[i].lo, &free_slot, lo)) {
      atomic_store(&ended[i].hi, hi);
      return;
    }
  }
}

/* Whether a thread that answered the stop was running on [lo, hi). */
static bool answered_thread_runs_on(uintptr_t lo, uintptr_t hi) {
  if (stop.registers == NULL) return false;
  size_t filled = atomic_load(&stop.next_slot);
  for (size_t i = 0; i < filled && i < stop.slots; i++) {
    if (atomic_load(&stop.answered_by[i]) == 0) continue;
    uintptr_t sp = stop.registers[i * REGISTER_WORDS + REG_RSP];
    if (sp >= lo && sp < hi) return true;
  }
  return false;
}

bool debug_threads_ended_stack(uintptr_t lo, uintptr_t *hi) {
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  for (size_t i = 0; i < ENDED_STACK_SLOTS; i++) {
    uintptr_t slot_hi = atomic_load(&ended[i].hi);
    if (slot_hi == 0 || atomic_load(&ended[i].lo) != lo) continue;
    if ((here >= lo && here < slot_hi) || answered_thread_runs_on(lo, slot_hi)) return false;
    *hi = slot_hi;
    return true;
  }
  return false;
}

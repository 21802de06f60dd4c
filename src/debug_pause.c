/*
 * debug_pause.c: the threads' records and the pause that walkers ask for
 * (see debug_pause.h).  Records come from the os layer, in chunks, and are
 * never unmapped: a walker may be reading one while its thread exits.
 */
#include "debug_pause.h"

#include <pthread.h>
#include <sched.h>

#include "debug_threads.h"
#include "os.h"

__thread debug_thread_t *debug_tls_thread __attribute__((tls_model("initial-exec")));
_Atomic(uint32_t) debug_pause_asked;
bool debug_pause_fenced;

/* Set while this thread holds the pause: its own operations (none are
 * expected; a report never allocates) must not wait for it. */
static __thread bool tls_holds_pause __attribute__((tls_model("initial-exec")));

static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER; /* making and listing records */
static _Atomic(debug_thread_t *) records;
static debug_thread_t *chunk_next, *chunk_end;
/* Records are carved from chunks of this size: 1024 threads' worth. */
#define RECORD_CHUNK_BYTES ((size_t)64 << 10)

static pthread_mutex_t pause_lock = PTHREAD_MUTEX_INITIALIZER; /* one walker at a time */
static pthread_key_t thread_key;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Spins on a busy thread before giving the processor away. */
#define PAUSE_SPINS_BEFORE_YIELD 64

static void spin_once(unsigned *spins) {
  if (++*spins % PAUSE_SPINS_BEFORE_YIELD == 0) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
  else __builtin_ia32_pause();
#endif
}

/* ---- records ----------------------------------------------------------------- */

/* The thread is ending: its record is free for the next new thread, and
 * its stack no root for the exit report (debug_threads.h).  A later call
 * of the thread's (another key's destructor that frees) claims one again,
 * and the C library calls this again for it. */
static void thread_record_release(void *value) {
  debug_thread_t *t = value;
  debug_threads_ended();
  if (debug_tls_thread == t) debug_tls_thread = NULL;
  atomic_store_explicit(&t->claimed, 0, memory_order_release);
}

static debug_thread_t *record_take(void) {
  for (debug_thread_t *t = atomic_load_explicit(&records, memory_order_acquire); t != NULL; t = t->next) {
    uint32_t free_record = 0;
    if (atomic_load_explicit(&t->claimed, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong(&t->claimed, &free_record, 1))
      return t;
  }
  pthread_mutex_lock(&records_lock);
  if (chunk_next == chunk_end) {
    debug_thread_t *chunk = os_reserve_aligned(RECORD_CHUNK_BYTES, os_page_size());
    if (chunk == NULL) {
      pthread_mutex_unlock(&records_lock);
      return NULL;
    }
    chunk_next = chunk;
    chunk_end = chunk + RECORD_CHUNK_BYTES / sizeof *chunk;
  }
  debug_thread_t *t = chunk_next++;
  atomic_store_explicit(&t->claimed, 1, memory_order_relaxed);
  t->next = atomic_load_explicit(&records, memory_order_relaxed);
  atomic_store_explicit(&records, t, memory_order_release);
  pthread_mutex_unlock(&records_lock);
  return t;
}

/* The record of threads that cannot get one of their own (no memory for
 * it): counted with atomic additions, so a walker waits while any of them
 * is busy; such a thread's operation that finds a pause asked for waits
 * unless another of them holds the record busy, which the walker then
 * waits out. */
static debug_thread_t shared_record = { .claimed = 1, .shared = true };

debug_thread_t *debug_thread_claim(void) {
  debug_thread_t *t = record_take();
  if (t == NULL) t = &shared_record;
  debug_tls_thread = t;
  /* After the record is set: for a key past the few kept in the thread
   * itself, this allocates, and that allocation finds the record. */
  if (t != &shared_record) pthread_setspecific(thread_key, t);
  return t;
}

/* ---- operations and walkers ---------------------------------------------------- */

/* A pause lasts as long as a walk over every block and, at exit, a scan of
 * the process's memory: after a short spin, waiters sleep (on a 2-core
 * machine spinning threads would slow the walker they wait for). */
#define PAUSE_SPINS_BEFORE_SLEEP 256

void debug_op_wait(debug_thread_t *t) {
  if (tls_holds_pause) return;
  for (;;) {
    atomic_fetch_sub_explicit(&t->busy, 1, memory_order_release);
    for (unsigned spins = 0; atomic_load_explicit(&debug_pause_asked, memory_order_acquire) != 0;) {
      if (spins < PAUSE_SPINS_BEFORE_SLEEP) spin_once(&spins);
      else os_wait_while_equal(&debug_pause_asked, 1);
    }
    atomic_fetch_add(&t->busy, 1); /* rare, so a full fence is fine here */
    if (atomic_load(&debug_pause_asked) == 0) return;
  }
}

void debug_op_step_out(void) {
  debug_thread_t *t = debug_tls_thread;
  if (t == NULL || t->shared || tls_holds_pause) return; /* a shared count is not this thread's to drop */
  t->stepped_out = atomic_load_explicit(&t->busy, memory_order_relaxed);
  atomic_store_explicit(&t->busy, 0, memory_order_release);
}

void debug_op_step_in(void) {
  debug_thread_t *t = debug_tls_thread;
  if (t == NULL || t->shared || t->stepped_out == 0) return;
  uint32_t depth = t->stepped_out;
  t->stepped_out = 0;
  atomic_store_explicit(&t->busy, 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst); /* rare: a full fence is fine here */
  if (atomic_load_explicit(&debug_pause_asked, memory_order_acquire) != 0) debug_op_wait(t); /* as debug_op_begin */
  atomic_store_explicit(&t->busy, depth, memory_order_relaxed);
}

static void wait_until_idle(debug_thread_t *t) {
  unsigned spins = 0;
  while (atomic_load_explicit(&t->busy, memory_order_acquire) != 0) spin_once(&spins);
}

void debug_pause_all(void) {
  pthread_mutex_lock(&pause_lock);
  tls_holds_pause = true;
  atomic_store(&debug_pause_asked, 1);
  if (!debug_pause_fenced) os_barrier_all_threads();
  debug_thread_t *self = debug_tls_thread;
  for (debug_thread_t *t = atomic_load_explicit(&records, memory_order_acquire); t != NULL; t = t->next)
    if (t != self) wait_until_idle(t);
  if (self != &shared_record) wait_until_idle(&shared_record);
}

void debug_resume_all(void) {
  atomic_store(&debug_pause_asked, 0);
  os_wake_all(&debug_pause_asked);
  tls_holds_pause = false;
  pthread_mutex_unlock(&pause_lock);
}

/* ---- set-up, fork and heap exits ------------------------------------------------- */

/* A heap's release at thread exit may give segments back: an operation, as
 * far as walkers are concerned. */
static void heap_exit_before(void) { (void)debug_op_begin(); }
static void heap_exit_after(void) { debug_op_end(debug_tls_thread); }

static void fork_prepare(void) { debug_pause_all(); }
static void fork_parent(void) { debug_resume_all(); }
/* Only this thread goes on in the child: every other record is free, and
 * the barrier's registration may not have come along. */
static void fork_child(void) {
  debug_thread_t *self = debug_tls_thread;
  for (debug_thread_t *t = atomic_load_explicit(&records, memory_order_relaxed); t != NULL; t = t->next) {
    if (t == self) continue;
    atomic_store_explicit(&t->busy, 0, memory_order_relaxed);
    atomic_store_explicit(&t->claimed, 0, memory_order_relaxed);
  }
  atomic_store_explicit(&shared_record.busy, 0, memory_order_relaxed);
  pthread_mutex_init(&records_lock, NULL);
  pthread_mutex_init(&pause_lock, NULL);
  atomic_store_explicit(&debug_pause_asked, 0, memory_order_relaxed);
  tls_holds_pause = false;
  if (!debug_pause_fenced && !os_barrier_register()) debug_pause_fenced = true;
}

static void pause_init_once(void) {
  debug_pause_fenced = !os_barrier_register();
  pthread_key_create(&thread_key, thread_record_release);
  instance_add_heap_exit_hook(heap_exit_before, heap_exit_after);
  /* Before the layer's other locks, which its fork handler takes after. */
  instance_add_fork_hook(fork_prepare, fork_parent, fork_child);
}

void debug_pause_init(void) { pthread_once(&init_once, pause_init_once); }

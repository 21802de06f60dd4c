/*
 * debug_pause.h: keeping the debug layer's walks over every block apart
 * from its operations, without a lock on the operations.
 *
 * Each operation marks its thread busy with a plain store, then reads
 * whether a pause was asked for.  A walker (a leak report, a final check,
 * fork) asks for a pause, makes every thread's stores visible with one
 * barrier run on all of them (os_barrier_all_threads: membarrier), and
 * waits until no thread is busy; new operations wait until it resumes.
 * An operation thus costs two stores and two loads instead of an atomic
 * read-modify-write.  Where the kernel has no such barrier, each operation
 * orders its store and its load with a fence of its own.
 */
#ifndef GPA_DEBUG_PAUSE_H
#define GPA_DEBUG_PAUSE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* A thread's record: one per live thread that has called into the layer,
 * reused after the thread exits. */
typedef struct debug_thread {
  _Atomic(uint32_t) busy;      /* operations under way (nested ones: allocations made while capturing) */
  _Atomic(uint32_t) claimed;   /* a live thread holds this record */
  bool shared;                 /* the one record of threads that could not get theirs: counted atomically */
  uint32_t stepped_out;        /* `busy` while a report steps out of it (debug_op_step_out) */
  struct debug_thread *next;   /* every record ever made */
} __attribute__((aligned(64))) debug_thread_t;

extern __thread debug_thread_t *debug_tls_thread __attribute__((tls_model("initial-exec")));
extern _Atomic(uint32_t) debug_pause_asked;
/* No barrier on all threads: each operation fences itself (set once, while
 * a single thread runs). */
extern bool debug_pause_fenced;

/* Once, before the first operation: the barrier's registration, the
 * thread-exit key, the heap-exit and fork hooks. */
void debug_pause_init(void);

debug_thread_t *debug_thread_claim(void);
/* A pause was asked for as the operation began: step back, wait, retry. */
void debug_op_wait(debug_thread_t *t);

/* Around every operation of the layer (nested calls included). */
static inline debug_thread_t *debug_op_begin(void) {
  debug_thread_t *t = debug_tls_thread;
  if (GPA_UNLIKELY(t == NULL)) t = debug_thread_claim();
  uint32_t depth;
  if (GPA_LIKELY(!t->shared)) {
    depth = atomic_load_explicit(&t->busy, memory_order_relaxed);
    atomic_store_explicit(&t->busy, depth + 1, memory_order_relaxed);
    if (GPA_UNLIKELY(debug_pause_fenced)) atomic_thread_fence(memory_order_seq_cst);
    else atomic_signal_fence(memory_order_seq_cst); /* the walker's barrier does the rest */
  } else {
    depth = atomic_fetch_add(&t->busy, 1); /* a full fence too */
  }
  /* Acquire: a call that starts after a walk's resume (the store of 0)
   * sees everything the walk did (a plain load on x86-64). */
  if (GPA_UNLIKELY(atomic_load_explicit(&debug_pause_asked, memory_order_acquire) != 0) && depth == 0)
    debug_op_wait(t);
  return t;
}

static inline void debug_op_end(debug_thread_t *t) {
  if (GPA_LIKELY(!t->shared))
    atomic_store_explicit(&t->busy, atomic_load_explicit(&t->busy, memory_order_relaxed) - 1, memory_order_release);
  else
    atomic_fetch_sub_explicit(&t->busy, 1, memory_order_release);
}

/* Step out of the calling thread's busy mark and back in, waiting then for
 * a pause asked meanwhile (not nested: reports are not).  For a report
 * written in the middle of an operation: printing a stack asks the loader
 * for symbols (dladdr), and a thread held off by a walk may hold the
 * loader's lock (dlopen allocates), so a report must not keep the walk
 * waiting.  Between the two, the operation touches no block. */
void debug_op_step_out(void);
void debug_op_step_in(void);

/* Stop every other thread's operations (waiting for those under way) and
 * keep them stopped until debug_resume_all.  One walker at a time. */
void debug_pause_all(void);
void debug_resume_all(void);

#endif /* GPA_DEBUG_PAUSE_H */

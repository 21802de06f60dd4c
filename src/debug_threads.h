/*
 * debug_threads.h: the process's other threads held still, their registers
 * copied into memory, while the exit report scans for pointers.  A block
 * whose only pointer sits in a register of a thread still running at exit
 * is then reached, not reported as lost.
 *
 * Each other thread (from /proc/self/task) gets DEBUG_STOP_SIGNAL; its
 * handler copies the registers the kernel saved for it into a mapping of
 * the os layer, which the scan reads as a root like any other private
 * mapping, and waits until debug_threads_resume.  A thread that does not
 * answer in time (it blocks the signal, say) is scanned without its
 * registers.  Nothing here allocates but debug_threads_started.
 */
#ifndef GPA_DEBUG_THREADS_H
#define GPA_DEBUG_THREADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Stop every other thread; returns how many answered. */
size_t debug_threads_stop(void);
/* Let them go again. */
void debug_threads_resume(void);

/* ---- the stacks of threads that have ended ----------------------------------
 * The C library keeps an ended thread's stack mapped, for the next thread
 * it starts, with whatever the thread left on it: pointers there reach
 * nothing any more, yet a scan of every private mapping would take them
 * for roots.  The layer notes its threads' stacks as they end, and forgets
 * one when a thread of its own starts on it. */

/* The calling thread's first call into the layer: its stack is a live one.
 * Looks the stack up (debug_stack_thread_bounds), which may allocate. */
void debug_threads_started(void);
/* The calling thread is ending: its stack, when known, is an ended one, up
 * to the thread's descriptor (and the static TLS just below it), which the
 * C library keeps with the stack along with the blocks it points to. */
void debug_threads_ended(void);
/* Between debug_threads_stop and debug_threads_resume: whether `lo` is the
 * start of an ended thread's stack that no thread runs on now (neither the
 * caller nor one that answered the stop), with *hi set to its end. */
bool debug_threads_ended_stack(uintptr_t lo, uintptr_t *hi);

#endif /* GPA_DEBUG_THREADS_H */

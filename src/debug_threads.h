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
 * registers.  Nothing here allocates.
 */
#ifndef GPA_DEBUG_THREADS_H
#define GPA_DEBUG_THREADS_H

#include <stddef.h>

/* Stop every other thread; returns how many answered. */
size_t debug_threads_stop(void);
/* Let them go again. */
void debug_threads_resume(void);

#endif /* GPA_DEBUG_THREADS_H */

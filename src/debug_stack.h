/*
 * debug_stack.h: call stacks for the debug layer.  Capturing one neither
 * allocates nor takes a lock the program could hold; stacks are kept once
 * each in a depot (memory straight from the os layer) and named by a small
 * id, so a block's record stays small and leaks group by id.
 */
#ifndef GPA_DEBUG_STACK_H
#define GPA_DEBUG_STACK_H

#include <stdbool.h>
#include <stdint.h>

#include "writer.h"

/* The most frames a stack keeps (gpa_debug_config_t.frames is capped here). */
#define DEBUG_MAX_FRAMES 64

/* 0 names "no stack" (none recorded, or the depot was out of memory). */
typedef uint32_t stack_id_t;

/* Once per process before the first capture with exact = true: loads the
 * C library's unwinder (whose loading allocates) while the caller has
 * marked the thread as inside the allocator, so those allocations are not
 * traced.  Harmless to call again. */
void debug_stack_prime(void);

/* Up to `max` return addresses of the current call stack, innermost first,
 * starting at `ret_addr`: the return address of the user's call into the
 * allocator (frames inside the library are never included).  exact = false
 * follows frame pointers, checked at every step to stay within the thread's
 * stack and to move upwards, so code without frame pointers ends the stack
 * instead of misleading it; exact = true uses the C library's backtrace().
 * Returns the count (at least 1 when max >= 1). *
 * The first call in each thread looks up the thread's stack with
 * pthread_getattr_np, which may allocate: the caller keeps those
 * allocations from being traced.  Otherwise exact = false neither allocates
 * nor takes a lock.  With the library linked into the program, its frames
 * are those below the stack slot that holds ret_addr: a caller that keeps
 * its own copy of ret_addr on the stack may let a library frame show. */
unsigned debug_stack_capture(uintptr_t *frames, unsigned max, uintptr_t ret_addr, bool exact);

/* The id of the current stack (debug_stack_capture's frame-pointer walk,
 * then debug_stack_save, in one pass: the frames hashed as they are read);
 * 0 when max is 0 or the depot cannot grow.  `entry_frame` is the frame
 * address (__builtin_frame_address(0)) of the library function the program
 * called, or 0.  When that record holds ret_addr (the function was entered
 * straight from the program, by a call or a chain of tail calls), the walk
 * starts there and skips telling the library's frames apart; otherwise it
 * is debug_stack_capture's. */
stack_id_t debug_stack_capture_id(unsigned max, uintptr_t ret_addr, uintptr_t entry_frame);

/* The calling thread's stack, [*lo, *hi), as the captures know it; looked
 * up first, if no capture has yet, when `look_up` (pthread_getattr_np,
 * which may allocate: as for the first capture, the caller keeps those
 * allocations from being traced).  false when it is not known. */
bool debug_stack_thread_bounds(bool look_up, uintptr_t *lo, uintptr_t *hi);

/* The id of this stack in the depot, adding it if new; 0 when n == 0 or
 * the depot cannot grow.  Thread-safe and lock-free for stacks already in
 * it.  Adding takes a spinlock, held for a copy of at most
 * DEBUG_MAX_FRAMES words (and an mmap per 1 MiB of frames): a fork while
 * another thread holds it leaves the child unable to add stacks, the one
 * hazard it has there.  Stacks longer than DEBUG_MAX_FRAMES are cut. */
stack_id_t debug_stack_save(const uintptr_t *frames, unsigned n);

/* The frames of a saved stack: count, and *frames pointing into the depot
 * (valid for the life of the process).  0 for id 0. */
unsigned debug_stack_load(stack_id_t id, const uintptr_t **frames);

/* The depot's tables (return addresses and indexes, never a block's
 * address): true when `addr` lies in one, *end set to where it ends.  Leak
 * checking skips them as roots. */
bool debug_stack_owns(uintptr_t addr, uintptr_t *end);

/* One line per frame, in the form people already read:
 *     "<indent>#0 0x55d0c2a1b2c3 in make_node+0x1c (/path/to/prog+0x1234)\n"
 * the symbol from dladdr (omitted when none: "#0 0x... (/path+0x1234)"),
 * then the module and the offset in it that addr2line takes.  A stack with
 * no frames prints "<indent>(no stack recorded)\n". */
void debug_stack_print(writer_t *w, stack_id_t id, const char *indent);

#endif /* GPA_DEBUG_STACK_H */

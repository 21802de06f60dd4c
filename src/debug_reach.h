/*
 * debug_reach.h: which unfreed blocks the program can still reach.  A
 * conservative scan, as leak checkers do it: every word of the roots (all
 * readable, writable private mappings of the process: modules' data and
 * bss, thread stacks (but those of threads that have ended), TLS, memory
 * the program mapped itself, and so the
 * other threads' registers once debug_threads_stop has copied them into
 * such a mapping), then of every
 * block reached, is taken for a pointer if it lands inside a block.
 */
#ifndef GPA_DEBUG_REACH_H
#define GPA_DEBUG_REACH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  REACH_DIRECT = 0,    /* lost: no path from any root, and no lost block points to it */
  REACH_INDIRECT = 1,  /* lost, but pointed to by another lost block */
  REACH_REACHABLE = 2, /* some root leads to it */
} reach_state_t;

typedef struct reach_block {
  uintptr_t start; /* first byte the program was given */
  size_t size;     /* bytes the program asked for: the range scanned and hit */
  uint32_t state;  /* reach_state_t, written by debug_reach_classify */
  uint32_t group;  /* the caller's (e.g. which leak report line) */
} reach_block_t;

/* The allocator's own memory, never a root (its blocks are scanned only
 * when reached): true when `addr` lies in it, with *end set to where that
 * memory ends.  Asked once per root page.  Any other memory that holds
 * block addresses (the report's own tables, say) must be claimed here too,
 * or every block it names looks reachable. */
typedef bool (*reach_owned_fn)(void *ctx, uintptr_t addr, uintptr_t *end);

/* A thread's stack that is no root, though mapped like one: true when `lo`,
 * the start of a mapping right above an inaccessible one (a stack's guard
 * page), is where the stack of a thread that has ended starts, with *end
 * set to where that stack ends.  Asked only for such mappings, so a range
 * noted once and since unmapped and reused by other memory is not left
 * out unless it looks like a thread's stack again. */
typedef bool (*reach_ended_stack_fn)(void *ctx, uintptr_t lo, uintptr_t *end);

/* Classify `blocks` (sorted by start, not overlapping).  A word anywhere in
 * [start, start + size) reaches the block (a size 0 block: its start only).
 * `owned` and `ended_stack` (either may be NULL) are called with `ctx`.
 * The calling thread's stack is scanned from `stack_from` (an address in
 * the caller's frame) upwards only, so the checker's own locals do not keep
 * blocks alive; 0 scans it whole.  Values that frames above `stack_from`
 * keep only in callee-saved registers are missed once a frame below saves
 * them there.  The `blocks` array itself is never a root.  Root pages are
 * copied through the kernel, so a page unmapped meanwhile or not readable
 * is skipped rather than faulted on; blocks are read in place and must
 * stay mapped.  Memory for the work is taken from the os layer and given
 * back; errno is left as it was.  Returns false (every state left
 * REACH_DIRECT) when the roots cannot be read or work memory is short. */
bool debug_reach_classify(reach_block_t *blocks, size_t n, reach_owned_fn owned, reach_ended_stack_fn ended_stack,
                          void *ctx, uintptr_t stack_from);

#endif /* GPA_DEBUG_REACH_H */

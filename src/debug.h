/*
 * debug.h: the debug layer.  It sits beside the core, not in it: a debug
 * state wraps one core instance, every block it hands out carries a record
 * (a header before the block) and guard bytes after it, and every free is
 * checked against that record.  The core's fast paths never see it: the
 * interfaces (the malloc shims, the gpa_t vtable) call into it only when it
 * is switched on.
 *
 * One gpa_debug_config_t (gpa.h) decides every behaviour; GPA_OPTIONS
 * fills one for malloc's instance (debug_options.h).
 */
#ifndef GPA_DEBUG_H
#define GPA_DEBUG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "debug_stack.h"
#include "gpa.h"
#include "internal.h"

/* A block's record, at the start of its core block, just before the bytes
 * the program gets.  The first two words are the quarantine's links: the
 * only part the core overwrites (with its own free-list words) once a
 * block goes back to it, so the rest (magic, size, stacks) still tells a
 * late double free what the block was.  There is no list of live blocks:
 * the walks that need them find them in the core (debug_for_each_live). */
typedef struct debug_header {
  struct debug_header *next, *prev; /* quarantine FIFO */
  uint64_t size;                    /* bytes the program asked for */
  uint64_t seq;                     /* allocation number, process-wide */
  uint32_t magic;                   /* DEBUG_MAGIC_LIVE or DEBUG_MAGIC_FREED; a free claims it atomically */
  uint32_t pad;                     /* from the core block's start to the program's bytes */
  stack_id_t alloc_stack, free_stack;
  uint32_t alloc_thread, free_thread;
  uint16_t check;                   /* a hash of the fields above and below: catches writes before the block */
  uint8_t align_log2;               /* the alignment asked for */
  uint8_t spare;                    /* keeps the record at 64 bytes */
  uint32_t slack;                   /* bytes after the program's up to the core block's end (capped) */
} debug_header_t;

/* A row per size class, one for large blocks. */
#define DEBUG_STAT_ROWS (GPA_CLASS_COUNT + 1)

/* The totals of the statistics (stats=1 only) are counted in stripes
 * under spinlocks, a thread's counts in the stripe of its number: its own
 * lock, which no other thread touches while fewer than DEBUG_STRIPES
 * threads run.  64: a few times the threads a busy program runs, and a
 * power of two. */
#define DEBUG_STRIPES 64

typedef struct debug_stripe {
  _Atomic(int) held;           /* a spinlock over the counts below */
  uint64_t allocs, frees, bytes;
  uint64_t row_allocs[DEBUG_STAT_ROWS];
} __attribute__((aligned(64))) debug_stripe_t;

/* The figures of gpa_stats_print, summed over the stripes. */
typedef struct debug_stats {
  size_t live_bytes, live_blocks;
  size_t peak_bytes, peak_blocks;
  uint64_t total_allocs, total_frees, total_bytes;
  uint64_t failed_allocs; /* refused by the memory limit or out of memory */
  uint64_t row_allocs[DEBUG_STAT_ROWS];
  uint64_t row_live[DEBUG_STAT_ROWS];
  size_t quarantine_bytes;
} debug_stats_t;

typedef struct debug_state {
  gpa_debug_config_t config;
  gpa_instance_t *inst;        /* the core instance the blocks come from */
  gpa_instance_t *plain;       /* blocks of this instance are not ours but pass through (malloc's) */
  const void *owner;           /* the gpa_t it serves (NULL: malloc), for reports */
  int log_fd;                  /* where reports and logs go (see debug_log_fd) */
  uint64_t log_dev, log_ino;   /* what log_fd was when it was set */
  /* Process-wide live and peak figures, kept only when debug_keeps_totals();
   * the stripes' totals only with stats=1. */
  _Atomic(size_t) live_bytes, live_blocks, peak_bytes, peak_blocks;
  _Atomic(uint64_t) failed_allocs;
  pthread_mutex_t lock;        /* the quarantine */
  debug_header_t *quarantine_head, *quarantine_tail; /* oldest first */
  size_t quarantine_bytes;
  struct debug_state *next_state; /* every debug state, for fork */
  debug_stripe_t stripes[DEBUG_STRIPES];
} debug_t;

/* Where reports go: `fd` (standard error, or the log file), kept under a
 * high descriptor number of its own, so a program that closes its standard
 * error before exiting (as coreutils do) still gets its exit report.
 * Takes ownership of fd unless it is 2. */
void debug_set_log(debug_t *d, int fd);
/* The descriptor to write to now: the one set, if it still names the same
 * file, else standard error. */
int debug_log_fd(const debug_t *d);

/* Set up a debug state over `inst`; memory from the os layer.  NULL with
 * ENOMEM when none can be had. */
debug_t *debug_create(gpa_instance_t *inst, const gpa_debug_config_t *config, const void *owner);

/* Verify and release everything the state holds (the quarantine goes back
 * to the core; live blocks are left for the instance's own teardown), and
 * report leaks and statistics as the config asks.  *leaked_blocks and
 * *leaked_bytes: the program's live blocks and the bytes it asked for. */
void debug_destroy(debug_t *d, size_t *leaked_blocks, size_t *leaked_bytes);

/* The operations.  `ret_addr`: the return address of the program's call,
 * the first frame of every stack.  `op` names the call in reports
 * ("malloc", "free", "gpa_free"...). */
void *debug_alloc(debug_t *d, size_t size, size_t alignment, bool zero, uintptr_t ret_addr, const char *op);
/* sized: `size` is what the program says the block holds (free_sized,
 * gpa_free); checked against the record. */
void debug_free(debug_t *d, void *p, bool sized, size_t size, uintptr_t ret_addr, const char *op);
void *debug_realloc(debug_t *d, void *p, size_t size, uintptr_t ret_addr, const char *op);
/* Change a block's size in place when it fits its core block; false (block
 * unchanged) otherwise.  old_size is checked like a sized free. */
bool debug_resize(debug_t *d, void *p, size_t old_size, size_t new_size, uintptr_t ret_addr, const char *op);
/* The size the program asked for (malloc_usable_size in debug mode: the
 * slack is guard bytes, not the program's). */
size_t debug_usable_size(debug_t *d, const void *p, uintptr_t ret_addr);

/* Whether the process-wide totals are kept: only when the memory limit
 * needs them or the statistics show peaks (shared counters are what
 * threads allocating at once would wait on most). */
static inline bool debug_keeps_totals(const debug_t *d) {
  return d->config.memory_limit != 0 || d->config.stats;
}

void debug_collect_stats(debug_t *d, debug_stats_t *out);

/* Every live block's record, for the walks of the reports: call between
 * debug_pause_all and debug_resume_all (debug_pause.h), so that no block
 * is made or freed meanwhile. */
typedef void (*debug_live_visit_fn)(void *ctx, debug_header_t *h);
void debug_for_each_live(debug_t *d, debug_live_visit_fn visit, void *ctx);

/* The program's live blocks and the bytes it asked for (quarantined blocks
 * are freed). */
void debug_count_live(debug_t *d, size_t *blocks, size_t *bytes);
bool debug_owns(debug_t *d, const void *p);
/* malloc_trim in debug mode: the core's trim, kept apart from the walks. */
bool debug_trim(debug_t *d);

/* Check every live block's guard bytes; the first damaged one is reported
 * as an overflow found by `when`. */
void debug_verify_live(debug_t *d, const char *when);
/* The same for the quarantine's fill: the first block written after its
 * free is reported, found `when`. */
void debug_verify_quarantine(debug_t *d, const char *when);

/* ---- debug_report.c ---- */

/* The leak report on the state's log: blocks still live, grouped by their
 * allocation stack, largest first.  at_exit: classify them by what the
 * process can still reach (debug_reach.h) and list only the lost ones in
 * full; otherwise (gpa_deinit) every live block is a leak.  Returns the
 * blocks counted as leaked. */
size_t debug_report_leaks(debug_t *d, bool at_exit);

/* The statistics table on the state's log. */
void debug_print_stats(debug_t *d);

/* ---- malloc's debug state (debug_malloc.c) --------------------------------
 * Decided once, on the first call into the allocation family, from
 * GPA_OPTIONS.  With the layer off, each entry point of the family pays one
 * load and one well-predicted branch, and malloc and free not even that:
 * their fast paths cannot succeed in debug mode (the thread's heap stays the
 * empty one), so only their slow paths ask. */
enum { DEBUG_MODE_UNDECIDED = 0, DEBUG_MODE_OFF = 1, DEBUG_MODE_ON = 2, DEBUG_MODE_DECIDING = 3 };
extern _Atomic(int) gpa_debug_mode;
extern debug_t *gpa_debug_malloc; /* set before the mode turns DEBUG_MODE_ON */
bool debug_malloc_decide(void);

/* Whether malloc's calls go through the debug layer (deciding first). */
static inline bool debug_malloc_active(void) {
  int mode = atomic_load_explicit(&gpa_debug_mode, memory_order_acquire);
  if (GPA_LIKELY(mode == DEBUG_MODE_OFF)) return false;
  if (mode == DEBUG_MODE_ON) return true;
  return debug_malloc_decide();
}


#endif /* GPA_DEBUG_H */

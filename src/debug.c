/*
 * debug.c: the debug layer's blocks: the record before each block and the
 * guard bytes after it, the live list, the quarantine, the memory limit,
 * and every report about a block (double and invalid frees, size
 * mismatches, overflows, writes after free).
 *
 * Locking: none on a block's way in and out.  Every operation is marked
 * busy for the walks that look at every block (debug_pause.h); a free
 * claims its block by swapping the record's magic, so of two threads that
 * free one block at once, one reports the double free.  The quarantine
 * has a mutex, the statistics' totals (stats=1) striped spinlocks.  Stacks
 * are captured before any lock (capturing may allocate once per thread)
 * and reports are written after it is released, so a report that ends in
 * abort() never leaves one held.
 */
#include "debug.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "debug_pause.h"
#include "debug_threads.h"
#include "writer.h"
#include "os.h"
#include "size_class.h"

/* Written over the slack after every block; 0xCB is odd (never a valid
 * aligned pointer byte pattern), not a common fill (0x00, 0xFF), and
 * distinct from the two fills in gpa.h. */
#define DEBUG_CANARY_BYTE 0xCB
/* Guard bytes guaranteed after every block when canaries are on: two words,
 * so an off-by-one and a one-word overrun are both caught. */
#define DEBUG_CANARY_MIN 16

#define DEBUG_MAGIC_LIVE 0x4c617067u  /* "gpaL" */
#define DEBUG_MAGIC_FREED 0x46617067u /* "gpaF" */

_Static_assert(sizeof(debug_header_t) == 64, "the record is one cache line, a multiple of 16");

/* ---- per-thread ---------------------------------------------------------- */

/* Inside the allocator already: set while a stack is captured (the first
 * capture per thread asks the C library for the stack's bounds, which may
 * allocate) so those nested allocations are served without a stack. */
static __thread bool tls_inside __attribute__((tls_model("initial-exec")));
static __thread uint32_t tls_thread_number __attribute__((tls_model("initial-exec")));
static _Atomic(uint32_t) thread_numbers;

/* Threads are numbered in the order they first allocate or free: 1 is the
 * first, usually the main thread.  That first call also tells the exit
 * report that the thread's stack is a live one (debug_threads.h); looking
 * the stack up may allocate, untraced as a capture's lookup is. */
static GPA_NOINLINE uint32_t thread_first_call(void) {
  tls_thread_number = atomic_fetch_add_explicit(&thread_numbers, 1, memory_order_relaxed) + 1;
  bool inside = tls_inside;
  tls_inside = true;
  debug_threads_started();
  tls_inside = inside;
  return tls_thread_number;
}

static inline uint32_t thread_number(void) {
  if (GPA_UNLIKELY(tls_thread_number == 0)) return thread_first_call();
  return tls_thread_number;
}

/* Allocation numbers are handed to threads this many at a time: unique,
 * ordered within a thread and roughly across threads, and the shared
 * counter is touched once per 64 allocations instead of on every one. */
#define SEQ_BATCH 64
static _Atomic(uint64_t) allocation_seq;
static __thread uint64_t tls_seq_next, tls_seq_end __attribute__((tls_model("initial-exec")));

static uint64_t next_seq(void) {
  if (tls_seq_next == tls_seq_end) {
    tls_seq_next = atomic_fetch_add_explicit(&allocation_seq, SEQ_BATCH, memory_order_relaxed) + 1;
    tls_seq_end = tls_seq_next + SEQ_BATCH;
  }
  return tls_seq_next++;
}

/* ---- every state, for fork ------------------------------------------------ */

static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;
static debug_t *states;
static _Atomic(bool) fork_hook_added;

/* Spins on a held stripe before giving the processor to its holder: a
 * holder is usually a few instructions from letting go. */
#define STRIPE_SPINS_BEFORE_YIELD 64

static void stripe_lock(debug_stripe_t *st) {
  unsigned spins = 0;
  while (atomic_exchange_explicit(&st->held, 1, memory_order_acquire) != 0) {
    while (atomic_load_explicit(&st->held, memory_order_relaxed) != 0) {
      if (++spins % STRIPE_SPINS_BEFORE_YIELD == 0) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
      else __builtin_ia32_pause();
#endif
    }
  }
}

static void stripe_unlock(debug_stripe_t *st) { atomic_store_explicit(&st->held, 0, memory_order_release); }

static void lock_all_stripes(debug_t *d) {
  for (unsigned i = 0; i < DEBUG_STRIPES; i++) stripe_lock(&d->stripes[i]);
}

static void unlock_all_stripes(debug_t *d) {
  for (unsigned i = DEBUG_STRIPES; i-- > 0;) stripe_unlock(&d->stripes[i]);
}

/* Lock order: the pause (its own fork hook, run first), the stripes, then
 * the quarantine's lock. */
static void states_fork_prepare(void) {
  pthread_mutex_lock(&states_lock);
  for (debug_t *d = states; d != NULL; d = d->next_state) {
    lock_all_stripes(d);
    pthread_mutex_lock(&d->lock);
  }
}
static void states_fork_parent(void) {
  for (debug_t *d = states; d != NULL; d = d->next_state) {
    pthread_mutex_unlock(&d->lock);
    unlock_all_stripes(d);
  }
  pthread_mutex_unlock(&states_lock);
}
static void states_fork_child(void) {
  for (debug_t *d = states; d != NULL; d = d->next_state) {
    pthread_mutex_init(&d->lock, NULL);
    for (unsigned i = 0; i < DEBUG_STRIPES; i++) atomic_store(&d->stripes[i].held, 0);
  }
  pthread_mutex_init(&states_lock, NULL);
}

/* ---- the log ----------------------------------------------------------------- */

/* Descriptors from here up are rarely chosen by programs, which take the
 * lowest free number. */
#define DEBUG_LOG_FD_MIN 200

void debug_set_log(debug_t *d, int fd) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, DEBUG_LOG_FD_MIN);
  if (high >= 0) {
    if (fd != 2) close(fd);
    fd = high;
  }
  struct stat st;
  if (d->log_fd > 2) close(d->log_fd); /* the one set before (fresh states hold 0) */
  d->log_fd = fd;
  d->log_dev = d->log_ino = 0;
  if (fstat(fd, &st) == 0) {
    d->log_dev = st.st_dev;
    d->log_ino = st.st_ino;
  }
}

int debug_log_fd(const debug_t *d) {
  struct stat st;
  if (fstat(d->log_fd, &st) == 0 && st.st_dev == d->log_dev && st.st_ino == d->log_ino) return d->log_fd;
  return 2;
}

/* ---- set-up ---------------------------------------------------------------- */

static size_t state_mapping_size(void) {
  size_t page = os_page_size();
  return (sizeof(debug_t) + page - 1) & ~(page - 1);
}

debug_t *debug_create(gpa_instance_t *inst, const gpa_debug_config_t *config, const void *owner) {
  debug_t *d = os_reserve_aligned(state_mapping_size(), os_page_size());
  if (d == NULL) return NULL;
  d->config = *config;
  if (d->config.frames > DEBUG_MAX_FRAMES) d->config.frames = DEBUG_MAX_FRAMES;
  d->inst = inst;
  d->owner = owner;
  debug_set_log(d, 2);
  pthread_mutex_init(&d->lock, NULL);
  debug_pause_init(); /* first: its fork hook must run before the states' */
  /* The core's fork handlers take the states' locks too (registering our
   * own with pthread_atfork would allocate, perhaps inside an allocation
   * made by pthread_atfork itself). */
  if (!atomic_exchange(&fork_hook_added, true))
    instance_add_fork_hook(states_fork_prepare, states_fork_parent, states_fork_child);
  pthread_mutex_lock(&states_lock);
  d->next_state = states;
  states = d;
  pthread_mutex_unlock(&states_lock);
  return d;
}

static void state_unregister(debug_t *d) {
  pthread_mutex_lock(&states_lock);
  for (debug_t **link = &states; *link != NULL; link = &(*link)->next_state) {
    if (*link == d) {
      *link = d->next_state;
      break;
    }
  }
  pthread_mutex_unlock(&states_lock);
}

/* ---- records ---------------------------------------------------------------- */

static uint16_t header_hash(const debug_header_t *h) {
  uint64_t x = h->size * 0x9E3779B97F4A7C15ull ^ h->seq ^ ((uint64_t)h->pad << 32) ^ h->slack ^
               ((uint64_t)h->align_log2 << 56);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return (uint16_t)(x ^ (x >> 16));
}

static uint8_t *header_user(const debug_header_t *h) { return (uint8_t *)h + h->pad; }

static size_t guard_bytes(const debug_t *d) { return d->config.canaries ? DEBUG_CANARY_MIN : 0; }

/* Row of the statistics table for a request of `size` bytes. */
static unsigned stats_row(size_t size) {
  return size <= GPA_SMALL_MAX ? size_class_of(size) : DEBUG_STAT_ROWS - 1;
}

_Static_assert((DEBUG_STRIPES & (DEBUG_STRIPES - 1)) == 0, "a power of two");

/* The calling thread's stripe. */
static debug_stripe_t *own_stripe(debug_t *d) { return &d->stripes[thread_number() & (DEBUG_STRIPES - 1)]; }

static void raise_to(_Atomic(size_t) *peak, size_t value) {
  size_t seen = atomic_load_explicit(peak, memory_order_relaxed);
  while (value > seen && !atomic_compare_exchange_weak_explicit(peak, &seen, value, memory_order_relaxed,
                                                                memory_order_relaxed)) {
  }
}

/* Count `size` more live bytes; false (nothing counted) when that passes
 * the memory limit, with *live the bytes live before. */
static bool live_bytes_add(debug_t *d, size_t size, size_t *live) {
  if (!debug_keeps_totals(d)) return true;
  size_t before = atomic_fetch_add_explicit(&d->live_bytes, size, memory_order_relaxed);
  if (d->config.memory_limit != 0 && before + size > d->config.memory_limit) {
    atomic_fetch_sub_explicit(&d->live_bytes, size, memory_order_relaxed);
    *live = before;
    return false;
  }
  raise_to(&d->peak_bytes, before + size);
  return true;
}

/* The same for a new block of `size` bytes. */
static bool live_add(debug_t *d, size_t size, size_t *live) {
  if (!live_bytes_add(d, size, live)) return false;
  if (!debug_keeps_totals(d)) return true;
  raise_to(&d->peak_blocks, atomic_fetch_add_explicit(&d->live_blocks, 1, memory_order_relaxed) + 1);
  return true;
}

/* A block changes from `old_size` to `new_size` bytes: false (nothing
 * changed) past the memory limit. */
static bool live_resize(debug_t *d, size_t old_size, size_t new_size) {
  size_t live;
  if (new_size > old_size) return live_bytes_add(d, new_size - old_size, &live);
  if (debug_keeps_totals(d)) atomic_fetch_sub_explicit(&d->live_bytes, old_size - new_size, memory_order_relaxed);
  return true;
}

static void live_remove(debug_t *d, size_t size) {
  if (!debug_keeps_totals(d)) return;
  atomic_fetch_sub_explicit(&d->live_bytes, size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&d->live_blocks, 1, memory_order_relaxed);
}

/* The statistics' totals (stats=1): an allocation and a free. */
static void count_alloc(debug_t *d, size_t size) {
  if (!d->config.stats) return;
  debug_stripe_t *st = own_stripe(d);
  stripe_lock(st);
  st->allocs++;
  st->bytes += size;
  st->row_allocs[stats_row(size)]++;
  stripe_unlock(st);
}

static void count_free(debug_t *d) {
  if (!d->config.stats) return;
  debug_stripe_t *st = own_stripe(d);
  stripe_lock(st);
  st->frees++;
  stripe_unlock(st);
}

static void count_live_block(void *ctx, debug_header_t *h) {
  debug_stats_t *out = ctx;
  out->live_bytes += h->size;
  out->live_blocks++;
  out->row_live[stats_row(h->size)]++;
}

/* The live figures of `out`, from a walk. */
static void collect_live(debug_t *d, debug_stats_t *out) {
  debug_pause_all();
  debug_for_each_live(d, count_live_block, out);
  debug_resume_all();
}

void debug_collect_stats(debug_t *d, debug_stats_t *out) {
  memset(out, 0, sizeof *out);
  collect_live(d, out);
  for (unsigned i = 0; i < DEBUG_STRIPES; i++) {
    debug_stripe_t *st = &d->stripes[i];
    stripe_lock(st);
    out->total_allocs += st->allocs;
    out->total_frees += st->frees;
    out->total_bytes += st->bytes;
    for (unsigned row = 0; row < DEBUG_STAT_ROWS; row++) out->row_allocs[row] += st->row_allocs[row];
    stripe_unlock(st);
  }
  out->peak_bytes = atomic_load(&d->peak_bytes);
  out->peak_blocks = atomic_load(&d->peak_blocks);
  out->failed_allocs = atomic_load(&d->failed_allocs);
  pthread_mutex_lock(&d->lock);
  out->quarantine_bytes = d->quarantine_bytes;
  pthread_mutex_unlock(&d->lock);
}

/* ---- stacks ------------------------------------------------------------------ */

static _Atomic(bool) unwinder_primed;

static GPA_NOINLINE stack_id_t capture_exact_stack(const debug_t *d, uintptr_t ret_addr) {
  uintptr_t frames[DEBUG_MAX_FRAMES];
  if (!atomic_load_explicit(&unwinder_primed, memory_order_acquire)) {
    debug_stack_prime(); /* loads the unwinder, which allocates */
    atomic_store_explicit(&unwinder_primed, true, memory_order_release);
  }
  return debug_stack_save(frames, debug_stack_capture(frames, d->config.frames, ret_addr, true));
}

/* `entry_frame`: the frame address of the layer's entry point the program
 * called (the stack's walk starts there when it can), or 0. */
static inline stack_id_t capture_stack(const debug_t *d, uintptr_t ret_addr, uintptr_t entry_frame) {
  if (d->config.frames == 0 || tls_inside) return 0;
  tls_inside = true;
  stack_id_t id = d->config.exact_stacks ? capture_exact_stack(d, ret_addr)
                                         : debug_stack_capture_id(d->config.frames, ret_addr, entry_frame);
  tls_inside = false;
  return id;
}

/* ---- reports ------------------------------------------------------------------ */

/* What a report needs of a block, copied out under the lock so the report
 * itself runs without it. */
typedef struct block_view {
  const void *user;
  size_t size;
  size_t alignment;
  stack_id_t alloc_stack, free_stack;
  uint32_t alloc_thread, free_thread;
} block_view_t;

static block_view_t view_of(const debug_header_t *h) {
  return (block_view_t){.user = header_user(h), .size = h->size, .alignment = (size_t)1 << h->align_log2,
                        .alloc_stack = h->alloc_stack,
                        .free_stack = h->free_stack, .alloc_thread = h->alloc_thread,
                        .free_thread = h->free_thread};
}


static void report_begin(writer_t *w, const debug_t *d) {
  debug_op_step_out();
  writer_init(w, debug_log_fd(d));
  writer_str(w, "gpa: ");
}

static void report_stack(writer_t *w, const char *what, uint32_t thread, stack_id_t stack) {
  writer_str(w, "  ");
  writer_str(w, what);
  if (thread != 0) {
    writer_str(w, " by thread ");
    writer_dec(w, thread);
  }
  writer_str(w, " at:\n");
  debug_stack_print(w, stack, "    ");
}

/* The end of every misuse report: abort, or carry on when asked to. */
static void report_end(writer_t *w, const debug_t *d) {
  writer_flush(w);
  if (!d->config.continue_on_error) abort();
  debug_op_step_in();
}

static void report_block_line(writer_t *w, const block_view_t *v) {
  writer_str(w, "a ");
  writer_dec(w, v->size);
  writer_str(w, "-byte block ");
  if (v->alignment > GPA_MIN_ALIGN) {
    writer_str(w, "(aligned to ");
    writer_dec(w, v->alignment);
    writer_str(w, ") ");
  }
  writer_str(w, "at ");
  writer_hex(w, (uintptr_t)v->user);
}

static void report_misuse_here(writer_t *w, const char *op, stack_id_t here) {
  writer_str(w, "  ");
  writer_str(w, op);
  writer_str(w, " called by thread ");
  writer_dec(w, thread_number());
  writer_str(w, " at:\n");
  debug_stack_print(w, here, "    ");
}

/* ---- checks ---------------------------------------------------------------------- */

typedef enum {
  FIND_LIVE,        /* p is a live block's start */
  FIND_FREED,       /* p is a quarantined block's start */
  FIND_RELEASED,    /* p is the start of a block already given back to the core */
  FIND_INTERIOR,    /* p lies inside a live block, not at its start */
  FIND_OTHER_STATE, /* the block belongs to another instance */
  FIND_PLAIN,       /* a block of the plain instance the state lets pass */
  FIND_FOREIGN,     /* not our memory at all */
  FIND_CORRUPT,     /* our memory, but the record before p is not intact */
} find_result_t;

static bool header_intact(const debug_header_t *h, size_t core_size) {
  return (h->magic == DEBUG_MAGIC_LIVE || h->magic == DEBUG_MAGIC_FREED) && h->check == header_hash(h) &&
         h->pad >= sizeof(debug_header_t) && h->pad < core_size;
}

/* The common case without a division: a block aligned to at most the
 * record's size has its record right before it, at a core block's start. */
static inline debug_header_t *record_before(debug_t *d, const void *p) {
  gpa_segment_t *seg = segment_of(p);
  uintptr_t offset = (uintptr_t)p & GPA_SEGMENT_MASK;
  if (!segmap_contains(seg) || seg->instance != d->inst || offset < sizeof(debug_header_t)) return NULL;
  debug_header_t *h = (debug_header_t *)((uintptr_t)p - sizeof(debug_header_t));
  if (seg->kind == GPA_SEGMENT_LARGE) {
    if ((uint8_t *)h != seg->large_ptr) return NULL;
  } else if (!slab_is_block_start(slab_of(seg, h), h)) {
    return NULL;
  }
  return h->pad == sizeof(debug_header_t) && header_intact(h, h->pad + 1) ? h : NULL;
}

/* Blocks aligned to half a segment (GPA_SEGMENT_SIZE / 2) or more: the core
 * hands such a block out at a segment's middle or at the start of a mapping
 * of its own (over-aligned), and the record, at that start, lies a whole
 * alignment before the program's bytes: past the segment block_find looks
 * in, or at a pointer the core's over-aligned map does not know.  Below
 * this, the program's bytes are always in the core block's first segment. */
#define FAR_RECORD_MIN_PAD (GPA_SEGMENT_SIZE / 2)

/* The core block of such a block, for its user pointer `p`: tried at each
 * pad `p`'s alignment allows, from the least up, and taken where a core
 * block starts there and its record is intact and gives that pad.  Only
 * pointers block_find does not know come here, so a few lookups at most. */
static bool far_block_find(const void *p, gpa_block_info_t *info) {
  uintptr_t at = (uintptr_t)p;
  if (at == 0 || at % FAR_RECORD_MIN_PAD != 0) return false;
  uintptr_t largest = at & -at; /* the largest power of two `p` is aligned to */
  for (uintptr_t pad = FAR_RECORD_MIN_PAD; pad < at && pad <= largest; pad <<= 1) {
    const debug_header_t *h = (const debug_header_t *)(at - pad);
    if (block_find(h, info) && info->start == (const uint8_t *)h && header_intact(h, info->size) && h->pad == pad)
      return true;
    if (pad == largest) break; /* the next would overflow */
  }
  return false;
}

/* Classify `p` and, where there is a record, point *out at it.  No lock: the
 * caller reads the record's state again under its stripe's lock. */
static find_result_t find_block(debug_t *d, const void *p, debug_header_t **out) {
  debug_header_t *h = record_before(d, p);
  if (GPA_LIKELY(h != NULL)) {
    *out = h;
    return h->magic == DEBUG_MAGIC_LIVE ? FIND_LIVE : FIND_FREED;
  }
  gpa_block_info_t info;
  *out = NULL;
  if (!block_find(p, &info) && !far_block_find(p, &info)) return FIND_FOREIGN;
  if (info.instance != d->inst) return info.instance == d->plain && d->plain != NULL ? FIND_PLAIN : FIND_OTHER_STATE;
  h = (debug_header_t *)info.start;
  if (!header_intact(h, info.size)) {
    if (info.looks_free) {
      *out = h; /* size and stacks usually survive the core's two words */
      return FIND_RELEASED;
    }
    return FIND_CORRUPT;
  }
  *out = h;
  uint8_t *user = header_user(h);
  if ((const uint8_t *)p != user) return h->magic == DEBUG_MAGIC_LIVE ? FIND_INTERIOR : FIND_FREED;
  return h->magic == DEBUG_MAGIC_LIVE ? FIND_LIVE : FIND_FREED;
}

#define CANARY_WORD (0x0101010101010101ull * DEBUG_CANARY_BYTE)

/* Whether the guard bytes [user + size, user + guard_end) are intact, a
 * word at a time.  The guard ends where the core block does, on a multiple
 * of 16 from `user`; it starts anywhere, so the first word is read from the
 * 8-byte boundary below (the program's own bytes, inside the block) with
 * those bytes masked off. */
static bool canary_intact(const uint8_t *user, size_t size, size_t guard_end) {
  if (guard_end == size) return true;
  uintptr_t at = (uintptr_t)(user + size) & ~(uintptr_t)7;
  uintptr_t end = (uintptr_t)(user + guard_end);
  uint64_t word;
  memcpy(&word, (const void *)at, sizeof word);
  unsigned program_bytes = (unsigned)((uintptr_t)(user + size) & 7); /* little-endian: the low ones */
  if (((word ^ CANARY_WORD) & (~(uint64_t)0 << (8 * program_bytes))) != 0) return false;
  for (at += sizeof word; at < end; at += sizeof word) {
    memcpy(&word, (const void *)at, sizeof word);
    if (word != CANARY_WORD) return false;
  }
  return true;
}

/* The first and one past the last guard byte that changed, relative to the
 * end of the program's bytes; false when all are intact. */
static bool canary_damage(const uint8_t *user, size_t size, size_t guard_end, size_t *first, size_t *last) {
  if (GPA_LIKELY(canary_intact(user, size, guard_end))) return false;
  const uint8_t *g = user + size;
  size_t n = guard_end - size;
  size_t i = 0;
  while (i < n && g[i] == DEBUG_CANARY_BYTE) i++;
  if (i == n) return false;
  size_t j = n;
  while (j > i && g[j - 1] == DEBUG_CANARY_BYTE) j--;
  *first = i;
  *last = j;
  return true;
}

/* Where the guard bytes end, from the program's first byte. */
static size_t guard_end_of(const debug_header_t *h) { return h->size + h->slack; }

static void report_overflow(debug_t *d, const block_view_t *v, size_t first, size_t last, const char *op,
                            stack_id_t here) {
  /* `here` 0: found by a final check, not by a call of the program's. */
  writer_t w;
  report_begin(&w, d);
  writer_str(&w, "heap buffer overflow: ");
  writer_dec(&w, last);
  writer_str(&w, " byte(s) written past the end of ");
  report_block_line(&w, v);
  if (first != 0) {
    writer_str(&w, " (the first ");
    writer_dec(&w, first);
    writer_str(&w, " after it intact)");
  }
  writer_str(&w, ", found by ");
  writer_str(&w, op);
  writer_char(&w, '\n');
  report_stack(&w, "allocated", v->alloc_thread, v->alloc_stack);
  if (here != 0) report_misuse_here(&w, op, here);
  report_end(&w, d);
}

/* Free fill that changed while quarantined: a write after free. */
static bool fill_damage(const uint8_t *user, size_t size, size_t *first, size_t *count) {
  size_t i = 0;
  while (i < size && user[i] == GPA_DEBUG_FREE_BYTE) i++;
  if (i == size) return false;
  size_t changed = 0;
  for (size_t k = i; k < size; k++) changed += user[k] != GPA_DEBUG_FREE_BYTE;
  *first = i;
  *count = changed;
  return true;
}

static void report_write_after_free(debug_t *d, const block_view_t *v, size_t first, size_t count,
                                    const char *found_by) {
  writer_t w;
  report_begin(&w, d);
  writer_str(&w, "write after free: ");
  writer_dec(&w, count);
  writer_str(&w, " byte(s) changed from offset ");
  writer_dec(&w, first);
  writer_str(&w, " of ");
  report_block_line(&w, v);
  writer_str(&w, " after it was freed, found ");
  writer_str(&w, found_by);
  writer_char(&w, '\n');
  report_stack(&w, "freed", v->free_thread, v->free_stack);
  report_stack(&w, "allocated", v->alloc_thread, v->alloc_stack);
  report_end(&w, d);
}

/* Misuse of a pointer given to free, realloc or a size query. */
static void report_bad_pointer(debug_t *d, find_result_t kind, const void *p, const block_view_t *view,
                               const char *op, stack_id_t here) {
  writer_t w;
  report_begin(&w, d);
  block_view_t v = *view;
  switch (kind) {
  case FIND_FREED:
    writer_str(&w, op);
    writer_str(&w, "(): double free of ");
    writer_hex(&w, (uintptr_t)p);
    writer_str(&w, " (");
    report_block_line(&w, &v);
    writer_str(&w, ")\n");
    report_stack(&w, "allocated", v.alloc_thread, v.alloc_stack);
    report_stack(&w, "first freed", v.free_thread, v.free_stack);
    report_stack(&w, "freed again", thread_number(), here);
    break;
  case FIND_RELEASED:
    writer_str(&w, op);
    writer_str(&w, "(): invalid pointer ");
    writer_hex(&w, (uintptr_t)p);
    writer_str(&w, ": not a live block (freed already and given back, or never handed out)\n");
    report_misuse_here(&w, op, here);
    break;
  case FIND_INTERIOR: {
    size_t offset = (size_t)((const uint8_t *)p - (const uint8_t *)v.user);
    writer_str(&w, op);
    writer_str(&w, "(): invalid pointer ");
    writer_hex(&w, (uintptr_t)p);
    writer_str(&w, ": ");
    if ((const uint8_t *)p > (const uint8_t *)v.user && offset < v.size) {
      writer_dec(&w, offset);
      writer_str(&w, " byte(s) inside ");
    } else {
      writer_str(&w, "not the start of a block; it points into the guard bytes or the record of ");
    }
    report_block_line(&w, &v);
    writer_char(&w, '\n');
    report_stack(&w, "allocated", v.alloc_thread, v.alloc_stack);
    report_misuse_here(&w, op, here);
    break;
  }
  case FIND_OTHER_STATE:
    writer_str(&w, op);
    writer_str(&w, "(): invalid pointer ");
    writer_hex(&w, (uintptr_t)p);
    writer_str(&w, ": a block of another allocator instance\n");
    report_misuse_here(&w, op, here);
    break;
  case FIND_FOREIGN:
    writer_str(&w, op);
    writer_str(&w, "(): invalid pointer ");
    writer_hex(&w, (uintptr_t)p);
    writer_str(&w, ": not allocated by gpa\n");
    report_misuse_here(&w, op, here);
    break;
  case FIND_CORRUPT:
  default:
    writer_str(&w, op);
    writer_str(&w, "(): invalid pointer ");
    writer_hex(&w, (uintptr_t)p);
    writer_str(&w, ": no intact block record before it (a pointer never handed out, "
                   "or a write before the block's start)\n");
    report_misuse_here(&w, op, here);
    break;
  }
  report_end(&w, d);
}

static void report_size_mismatch(debug_t *d, const block_view_t *v, size_t given, const char *op,
                                 stack_id_t here) {
  writer_t w;
  report_begin(&w, d);
  writer_str(&w, op);
  writer_str(&w, "(): size mismatch for ");
  writer_hex(&w, (uintptr_t)v->user);
  writer_str(&w, ": allocation size ");
  writer_dec(&w, v->size);
  writer_str(&w, " byte(s) does not match free size ");
  writer_dec(&w, given);
  writer_char(&w, '\n');
  report_stack(&w, "allocated", v->alloc_thread, v->alloc_stack);
  report_misuse_here(&w, op, here);
  report_end(&w, d);
}

/* ---- verbose log -------------------------------------------------------------- */

static void log_event(const debug_t *d, const char *op, size_t size, const void *p, bool with_size,
                      uintptr_t ret_addr) {
  writer_t w;
  writer_init(&w, debug_log_fd(d));
  writer_str(&w, "gpa: ");
  writer_str(&w, op);
  writer_char(&w, '(');
  if (with_size) {
    writer_dec(&w, size);
    writer_str(&w, ") = ");
    writer_hex(&w, (uintptr_t)p);
  } else {
    writer_hex(&w, (uintptr_t)p);
    writer_str(&w, ") of ");
    writer_dec(&w, size);
    writer_str(&w, " byte(s)");
  }
  writer_str(&w, " [thread ");
  writer_dec(&w, thread_number());
  writer_str(&w, "] from\n");
  uintptr_t frame = ret_addr;
  stack_id_t id = tls_inside ? 0 : debug_stack_save(&frame, 1);
  debug_op_step_out(); /* dladdr: as a report (report_begin) */
  debug_stack_print(&w, id, "    ");
  writer_flush(&w);
  debug_op_step_in();
}

static void log_refused(const debug_t *d, const char *op, size_t size, size_t live) {
  writer_t w;
  writer_init(&w, debug_log_fd(d));
  writer_str(&w, "gpa: ");
  writer_str(&w, op);
  writer_char(&w, '(');
  writer_dec(&w, size);
  writer_str(&w, ") refused: ");
  writer_dec(&w, live);
  writer_str(&w, " byte(s) live, memory limit ");
  writer_dec(&w, d->config.memory_limit);
  writer_str(&w, " byte(s)\n");
  writer_flush(&w);
}

/* ---- the core below ----------------------------------------------------------- */

static void core_release(debug_t *d, void *block) {
  heap_free(instance_thread_heap_if_any(d->inst), block);
}

/* A block of the plain instance goes back to its core unchecked. */
static void plain_release(debug_t *d, void *p) {
  heap_free(instance_thread_heap_if_any(d->plain), p);
}

/* Release quarantined blocks beyond the limit: verified first (write after
 * free), then back to the core.  Takes the quarantine's lock itself. */
static void quarantine_drain(debug_t *d, size_t limit) {
  for (;;) {
    pthread_mutex_lock(&d->lock);
    debug_header_t *h = d->quarantine_head;
    if (h == NULL || d->quarantine_bytes <= limit) {
      pthread_mutex_unlock(&d->lock);
      return;
    }
    d->quarantine_head = h->next;
    if (d->quarantine_head == NULL) d->quarantine_tail = NULL;
    d->quarantine_bytes -= h->size;
    pthread_mutex_unlock(&d->lock);
    size_t first, count;
    if (d->config.free_fill && fill_damage(header_user(h), h->size, &first, &count)) {
      block_view_t v = view_of(h);
      report_write_after_free(d, &v, first, count, "when it left the quarantine");
      continue; /* carrying on: the block stays out of use */
    }
    core_release(d, h);
  }
}

static void quarantine_push(debug_t *d, debug_header_t *h) {
  pthread_mutex_lock(&d->lock);
  h->next = NULL;
  h->prev = d->quarantine_tail;
  if (d->quarantine_tail != NULL) d->quarantine_tail->next = h;
  else d->quarantine_head = h;
  d->quarantine_tail = h;
  d->quarantine_bytes += h->size;
  bool over = d->quarantine_bytes > d->config.quarantine;
  pthread_mutex_unlock(&d->lock);
  if (over) quarantine_drain(d, d->config.quarantine);
}

/* ---- the operations --------------------------------------------------------------- */

/* The size of the core block just handed out for `total` bytes: its size
 * class's, computed (malloc picks exactly that class), or looked up for
 * aligned and large blocks.  0 if the block is not the core's. */
static size_t core_block_size(const void *block, size_t total, size_t alignment) {
  gpa_block_info_t info;
  if (alignment <= GPA_MIN_ALIGN && total <= GPA_SLAB_SINGLE_MIN) {
    size_t size = size_class_block_size(size_class_of(total));
    GPA_INVARIANT("debug-core-size-is-class-size", block_find(block, &info) && info.size == size);
    return size;
  }
  return block_find(block, &info) ? info.size : 0;
}

/* The operations below run inside debug_op_begin/end (the public functions
 * at the end of this section); they call each other freely. */

static void *alloc_op(debug_t *d, size_t size, size_t alignment, bool zero, uintptr_t ret_addr,
                      uintptr_t entry_frame, const char *op) {
  uint32_t thread = thread_number(); /* first: a thread's first call may allocate */
  if (alignment < GPA_MIN_ALIGN) alignment = GPA_MIN_ALIGN;
  size_t pad = alignment > sizeof(debug_header_t) ? alignment : sizeof(debug_header_t);
  size_t total; /* a zero-size block still gets a byte, so its address lies inside its core block */
  if (pad > UINT32_MAX || /* the record keeps the pad in 32 bits */
      __builtin_add_overflow(pad, size != 0 ? size : 1, &total) ||
      __builtin_add_overflow(total, guard_bytes(d), &total)) {
    errno = ENOMEM;
    return NULL;
  }
  size_t live;
  if (!live_add(d, size, &live)) {
    atomic_fetch_add_explicit(&d->failed_allocs, 1, memory_order_relaxed);
    log_refused(d, op, size, live);
    errno = ENOMEM;
    return NULL;
  }
  stack_id_t stack = capture_stack(d, ret_addr, entry_frame);
  gpa_heap_t *heap = instance_thread_heap(d->inst);
  uint8_t *block = NULL;
  if (heap != NULL)
    block = alignment <= GPA_MIN_ALIGN ? heap_malloc(heap, total) : heap_malloc_aligned(heap, alignment, total);
  size_t core_size = block != NULL ? core_block_size(block, total, alignment) : 0;
  if (core_size == 0) {
    live_remove(d, size);
    atomic_fetch_add_explicit(&d->failed_allocs, 1, memory_order_relaxed);
    errno = ENOMEM;
    return NULL;
  }
  debug_header_t *h = (debug_header_t *)block;
  size_t slack = core_size - pad - size;
  h->size = size;
  h->seq = next_seq();
  h->pad = (uint32_t)pad;
  h->alloc_stack = stack;
  h->free_stack = 0;
  h->alloc_thread = thread;
  h->free_thread = 0;
  h->slack = slack < UINT32_MAX ? (uint32_t)slack : UINT32_MAX;
  h->align_log2 = (uint8_t)__builtin_ctzll(alignment);
  h->spare = 0;
  h->check = header_hash(h);
  uint8_t *user = block + pad;
  if (zero) memset(user, 0, size);
  else if (d->config.alloc_fill) memset(user, GPA_DEBUG_ALLOC_BYTE, size);
  if (d->config.canaries) memset(user + size, DEBUG_CANARY_BYTE, h->slack);
  /* Last: the walks count a block once its record says live, and the
   * pause orders this store before them. */
  __atomic_store_n(&h->magic, DEBUG_MAGIC_LIVE, __ATOMIC_RELAXED);
  count_alloc(d, size);
  if (d->config.verbose) log_event(d, op, size, user, true, ret_addr);
  return user;
}

/* find_live_block's answer for anything but a live block of ours with its
 * record right before it. */
static GPA_NOINLINE debug_header_t *find_live_block_slow(debug_t *d, void *p, const char *op, stack_id_t *here,
                                                         uintptr_t ret_addr, bool *plain) {
  debug_header_t *h;
  find_result_t kind = find_block(d, p, &h);
  *plain = kind == FIND_PLAIN;
  if (kind == FIND_LIVE || *plain) return *plain ? NULL : h;
  block_view_t v = {0}; /* no record to show */
  if (h != NULL) v = view_of(h);
  if (*here == 0) *here = capture_stack(d, ret_addr, 0);
  report_bad_pointer(d, kind, p, &v, op, *here);
  return NULL;
}

/* `p`'s record when `p` is a live block's start.  Otherwise NULL, after
 * reporting the misuse (when carrying on), or with *plain set for a block
 * of the plain instance.  The block may still be freed by another thread
 * meanwhile: a free claims it (claim_block). */
static inline debug_header_t *find_live_block(debug_t *d, void *p, const char *op, stack_id_t *here,
                                              uintptr_t ret_addr, bool *plain) {
  debug_header_t *h = record_before(d, p);
  if (GPA_LIKELY(h != NULL && h->magic == DEBUG_MAGIC_LIVE)) {
    *plain = false;
    return h;
  }
  return find_live_block_slow(d, p, op, here, ret_addr, plain);
}

/* block_checks_pass found something: report it. */
static GPA_NOINLINE bool block_checks_fail(debug_t *d, debug_header_t *h, bool sized, size_t size, const char *op,
                                           stack_id_t *here, uintptr_t ret_addr) {
  size_t first = 0, last = 0;
  bool mismatch = sized && size != h->size;
  if (!mismatch && !canary_damage(header_user(h), h->size, guard_end_of(h), &first, &last)) return true;
  block_view_t v = view_of(h);
  if (*here == 0) *here = capture_stack(d, ret_addr, 0);
  if (mismatch) report_size_mismatch(d, &v, size, op, *here);
  else report_overflow(d, &v, first, last, op, *here);
  return false;
}

/* A live block's size mismatch or damaged guard bytes, reported as found
 * by `op`; true when all is well. */
static inline bool block_checks_pass(debug_t *d, debug_header_t *h, bool sized, size_t size, const char *op,
                                     stack_id_t *here, uintptr_t ret_addr) {
  if (GPA_LIKELY((!sized || size == h->size) &&
                 (!d->config.canaries || canary_intact(header_user(h), h->size, guard_end_of(h)))))
    return true;
  return block_checks_fail(d, h, sized, size, op, here, ret_addr);
}

/* Take a live block out of use: true for the one thread whose swap found
 * it live; any other (a double free racing the first) reports. */
static bool claim_block(debug_t *d, debug_header_t *h, void *p, const char *op, stack_id_t *here,
                        uintptr_t ret_addr) {
  if (GPA_LIKELY(__atomic_exchange_n(&h->magic, DEBUG_MAGIC_FREED, __ATOMIC_ACQ_REL) == DEBUG_MAGIC_LIVE))
    return true;
  block_view_t v = view_of(h);
  if (*here == 0) *here = capture_stack(d, ret_addr, 0);
  report_bad_pointer(d, FIND_FREED, p, &v, op, *here);
  return false;
}

static void free_op(debug_t *d, void *p, bool sized, size_t size, uintptr_t ret_addr, uintptr_t entry_frame,
                    const char *op) {
  if (p == NULL) return;
  uint32_t thread = thread_number(); /* first: a thread's first call may allocate */
  /* checks=0: no free stacks and no size checks; misuse found anyway is
   * still reported, with the stack taken then. */
  stack_id_t here = d->config.checks ? capture_stack(d, ret_addr, entry_frame) : 0;
  sized = sized && d->config.checks;
  bool plain;
  debug_header_t *h = find_live_block(d, p, op, &here, ret_addr, &plain);
  if (h == NULL) {
    if (plain) plain_release(d, p);
    return;
  }
  if (!block_checks_pass(d, h, sized, size, op, &here, ret_addr)) return;
  if (!claim_block(d, h, p, op, &here, ret_addr)) return;
  h->free_stack = here; /* the check covers neither this nor the thread */
  h->free_thread = thread;
  live_remove(d, h->size);
  count_free(d);
  if (d->config.verbose) log_event(d, op, h->size, p, false, ret_addr);
  if (d->config.free_fill) memset(p, GPA_DEBUG_FREE_BYTE, h->size);
  if (d->config.quarantine != 0) quarantine_push(d, h);
  else core_release(d, h);
}

/* Change a live block's size where it stands. */
static void resize_in_place(debug_t *d, debug_header_t *h, size_t new_size) {
  size_t old_size = h->size;
  size_t room = guard_end_of(h);
  h->size = new_size;
  h->slack = (uint32_t)(room - new_size);
  h->check = header_hash(h);
  uint8_t *user = header_user(h);
  if (new_size > old_size && d->config.alloc_fill) memset(user + old_size, GPA_DEBUG_ALLOC_BYTE, new_size - old_size);
  if (d->config.canaries) memset(user + new_size, DEBUG_CANARY_BYTE, room - new_size);
}

/* Whether the block's core block holds `new_size` bytes and its guard. */
static bool fits_in_place(const debug_t *d, const debug_header_t *h, size_t new_size) {
  size_t room = guard_end_of(h);
  return new_size <= room && room - new_size >= guard_bytes(d) && new_size != 0;
}

static void *realloc_op(debug_t *d, void *p, size_t size, uintptr_t ret_addr, uintptr_t entry_frame,
                        const char *op) {
  if (p == NULL) return alloc_op(d, size, GPA_MIN_ALIGN, false, ret_addr, entry_frame, op);
  if (size == 0) { /* as glibc: free, and NULL */
    free_op(d, p, false, 0, ret_addr, entry_frame, op);
    return NULL;
  }
  stack_id_t here = 0;
  bool plain;
  debug_header_t *h = find_live_block(d, p, op, &here, ret_addr, &plain);
  if (h == NULL && !plain) return NULL;
  size_t old_size;
  if (plain) {
    gpa_block_info_t info;
    old_size = block_find(p, &info) ? info.size - (size_t)((uint8_t *)p - info.start) : 0;
  } else {
    if (!block_checks_pass(d, h, false, 0, op, &here, ret_addr)) return NULL;
    old_size = h->size;
    /* In place when it fits and no quarantine was asked for; with one,
     * always move, so a stale pointer to the old block shows up as a write
     * after free or a double free instead of working by luck. */
    if (d->config.quarantine == 0 && fits_in_place(d, h, size) && live_resize(d, old_size, size)) {
      resize_in_place(d, h, size);
      return p;
    }
  }
  void *q = alloc_op(d, size, GPA_MIN_ALIGN, false, ret_addr, entry_frame, op); /* malloc's alignment */
  if (q == NULL) return NULL; /* the old block stays as it was */
  memcpy(q, p, old_size < size ? old_size : size);
  if (size > old_size && d->config.alloc_fill) memset((uint8_t *)q + old_size, GPA_DEBUG_ALLOC_BYTE, size - old_size);
  if (plain) plain_release(d, p);
  else free_op(d, p, false, 0, ret_addr, entry_frame, op);
  return q;
}

static bool resize_op(debug_t *d, void *p, size_t old_size, size_t new_size, uintptr_t ret_addr, const char *op) {
  stack_id_t here = 0;
  bool plain;
  debug_header_t *h = find_live_block(d, p, op, &here, ret_addr, &plain);
  if (h == NULL) return false;
  if (!block_checks_pass(d, h, true, old_size, op, &here, ret_addr)) return false;
  if (!fits_in_place(d, h, new_size) || !live_resize(d, old_size, new_size)) return false;
  resize_in_place(d, h, new_size);
  return true;
}

static size_t usable_size_op(debug_t *d, const void *p, uintptr_t ret_addr) {
  if (p == NULL) return 0;
  stack_id_t here = 0;
  bool plain;
  debug_header_t *h = find_live_block(d, (void *)p, "malloc_usable_size", &here, ret_addr, &plain);
  if (plain) return gpa_core_usable_size(p);
  return h != NULL ? h->size : 0;
}

/* The entry points: each marks its thread busy for the walks, and passes
 * its own frame, where the stack's walk may start. */
#define ENTRY_FRAME() ((uintptr_t)__builtin_frame_address(0))

void *debug_alloc(debug_t *d, size_t size, size_t alignment, bool zero, uintptr_t ret_addr, const char *op) {
  debug_thread_t *t = debug_op_begin();
  void *p = alloc_op(d, size, alignment, zero, ret_addr, ENTRY_FRAME(), op);
  debug_op_end(t);
  return p;
}

void debug_free(debug_t *d, void *p, bool sized, size_t size, uintptr_t ret_addr, const char *op) {
  debug_thread_t *t = debug_op_begin();
  free_op(d, p, sized, size, ret_addr, ENTRY_FRAME(), op);
  debug_op_end(t);
}

void *debug_realloc(debug_t *d, void *p, size_t size, uintptr_t ret_addr, const char *op) {
  debug_thread_t *t = debug_op_begin();
  void *q = realloc_op(d, p, size, ret_addr, ENTRY_FRAME(), op);
  debug_op_end(t);
  return q;
}

bool debug_resize(debug_t *d, void *p, size_t old_size, size_t new_size, uintptr_t ret_addr, const char *op) {
  debug_thread_t *t = debug_op_begin();
  bool done = resize_op(d, p, old_size, new_size, ret_addr, op);
  debug_op_end(t);
  return done;
}

size_t debug_usable_size(debug_t *d, const void *p, uintptr_t ret_addr) {
  debug_thread_t *t = debug_op_begin();
  size_t size = usable_size_op(d, p, ret_addr);
  debug_op_end(t);
  return size;
}

bool debug_owns(debug_t *d, const void *p) {
  debug_header_t *h;
  return find_block(d, p, &h) == FIND_LIVE;
}

bool debug_trim(debug_t *d) {
  debug_thread_t *t = debug_op_begin();
  bool released = instance_trim(d->inst);
  debug_op_end(t);
  return released;
}

/* ---- the walks ------------------------------------------------------------------------ */

typedef struct live_walk {
  debug_t *d;
  debug_live_visit_fn visit;
  void *ctx;
} live_walk_t;

/* A core block holds a live block of ours when its record says so. */
static void visit_core_block(void *ctx, uint8_t *start, size_t size) {
  live_walk_t *walk = ctx;
  debug_header_t *h = (debug_header_t *)start;
  if (size < sizeof *h || h->magic != DEBUG_MAGIC_LIVE || !header_intact(h, size)) return;
  walk->visit(walk->ctx, h);
}

void debug_for_each_live(debug_t *d, debug_live_visit_fn visit, void *ctx) {
  live_walk_t walk = {.d = d, .visit = visit, .ctx = ctx};
  instance_for_each_block(d->inst, visit_core_block, &walk);
}

void debug_count_live(debug_t *d, size_t *blocks, size_t *bytes) {
  debug_stats_t st = {0};
  collect_live(d, &st);
  *blocks = st.live_blocks;
  *bytes = st.live_bytes;
}

/* ---- the end ------------------------------------------------------------------------ */

typedef struct overflow_search {
  bool damaged;
  size_t first, last;
  block_view_t view;
} overflow_search_t;

static void check_guard(void *ctx, debug_header_t *h) {
  overflow_search_t *s = ctx;
  if (s->damaged) return;
  s->damaged = canary_damage(header_user(h), h->size, guard_end_of(h), &s->first, &s->last);
  if (s->damaged) s->view = view_of(h);
}

/* Verify every live block's guard bytes (deinit and exit): an overflow of a
 * block never freed is still an overflow.  The first damaged block is
 * reported. */
void debug_verify_live(debug_t *d, const char *when) {
  if (!d->config.canaries) return;
  overflow_search_t search = {0};
  debug_pause_all();
  debug_for_each_live(d, check_guard, &search);
  debug_resume_all();
  if (search.damaged) report_overflow(d, &search.view, search.first, search.last, when, 0);
}

void debug_verify_quarantine(debug_t *d, const char *when) {
  if (!d->config.free_fill) return;
  block_view_t v;
  size_t first = 0, count = 0;
  bool damaged = false;
  pthread_mutex_lock(&d->lock);
  for (debug_header_t *h = d->quarantine_head; h != NULL && !damaged; h = h->next) {
    damaged = fill_damage(header_user(h), h->size, &first, &count);
    if (damaged) v = view_of(h);
  }
  pthread_mutex_unlock(&d->lock);
  if (damaged) report_write_after_free(d, &v, first, count, when);
}

void debug_destroy(debug_t *d, size_t *leaked_blocks, size_t *leaked_bytes) {
  quarantine_drain(d, 0);
  debug_verify_live(d, "gpa_deinit");
  debug_count_live(d, leaked_blocks, leaked_bytes);
  if (d->config.leaks) debug_report_leaks(d, false);
  if (d->config.stats) debug_print_stats(d);
  state_unregister(d);
  pthread_mutex_destroy(&d->lock);
  if (d->log_fd > 2) close(d->log_fd); /* our own copy, standard error's or the log file's */
  os_release(d, state_mapping_size());
}

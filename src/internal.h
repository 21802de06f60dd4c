/*
 * internal.h: declarations shared by the core's files and the inline fast
 * paths (pointer -> segment -> slab, free-list encoding, the thread's heap).
 */
#ifndef GPA_INTERNAL_H
#define GPA_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "os.h"
#include "types.h"

#define GPA_LIKELY(x) __builtin_expect(!!(x), 1)
#define GPA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define GPA_NOINLINE __attribute__((noinline))
#define GPA_COLD __attribute__((cold, noinline))
#define GPA_EXPORT __attribute__((visibility("default")))

/* ---- address maps: which segment-aligned addresses are ours -------------
 * Indexed by address >> GPA_SEGMENT_SHIFT over the allocator's address
 * space (os.h's OS_ADDRESS_BITS), in zero-initialised storage that only
 * becomes resident where touched.  They let free() tell our pointers from
 * foreign ones without touching them. */
#define GPA_ADDRESS_SLOTS ((uintptr_t)1 << (OS_ADDRESS_BITS - GPA_SEGMENT_SHIFT))

static inline gpa_segment_t *segment_of(const void *p) {
  return (gpa_segment_t *)((uintptr_t)p & ~(uintptr_t)GPA_SEGMENT_MASK);
}

/* The segment map, read by every free: a byte per slot (32 MiB on x86-64),
 * so the test is one compare, not a word load, shift and bit test. */
extern _Atomic(uint8_t) gpa_segmap[GPA_ADDRESS_SLOTS];

static inline bool segmap_contains(const gpa_segment_t *seg) {
  uintptr_t index = (uintptr_t)seg >> GPA_SEGMENT_SHIFT;
  if (GPA_UNLIKELY(index >= GPA_ADDRESS_SLOTS)) return false;
  return atomic_load_explicit(&gpa_segmap[index], memory_order_relaxed) != 0;
}
void segmap_insert(const gpa_segment_t *seg);
void segmap_remove(const gpa_segment_t *seg);

/* Maps off the fast path: a bit per slot (4 MiB on x86-64). */
#define GPA_ADDRMAP_WORDS (GPA_ADDRESS_SLOTS / 64)
static inline bool addrmap_contains(_Atomic(uint64_t) *map, const void *addr) {
  uintptr_t index = (uintptr_t)addr >> GPA_SEGMENT_SHIFT;
  if (GPA_UNLIKELY(index >= GPA_ADDRESS_SLOTS)) return false;
  uint64_t word = atomic_load_explicit(&map[index / 64], memory_order_relaxed);
  return (word >> (index % 64)) & 1;
}
void addrmap_insert(_Atomic(uint64_t) *map, const void *addr);
void addrmap_remove(_Atomic(uint64_t) *map, const void *addr);

/* ---- slabs ------------------------------------------------------------- */

static inline gpa_slab_t *slab_of(gpa_segment_t *seg, const void *p) {
  size_t page = ((uintptr_t)p & GPA_SEGMENT_MASK) >> GPA_PAGE_SHIFT;
  return seg->page_slab[page];
}

/* The block at `index`, for an index below the slab's capacity (the
 * product then stays below 2^32: see types.h). */
static inline gpa_block_t *slab_block_at(const gpa_slab_t *s, uint32_t index) {
  return (gpa_block_t *)(s->start + (uint32_t)(index * s->block_size));
}

/* True when `p` is the start of a block this slab has carved, with its
 * index.  The divisibility test is Lemire, Kaser and Kurz's ("Faster
 * remainder by direct computation", 2019): for offsets below 2^32, offset
 * is a multiple of the block size iff the low half of offset * divides is
 * below divides, and the high half is then offset / block_size. */
static inline bool slab_block_index(const gpa_slab_t *s, const void *p, uint32_t *index) {
  uintptr_t offset = (uintptr_t)p - (uintptr_t)s->start;
  if (offset >= atomic_load_explicit(&s->carved_bytes, memory_order_relaxed)) return false;
  unsigned __int128 product = (unsigned __int128)offset * s->divides;
  *index = (uint32_t)(product >> 64);
  return (uint64_t)product < s->divides;
}

static inline bool slab_is_block_start(const gpa_slab_t *s, const void *p) {
  uint32_t index;
  return slab_block_index(s, p, &index);
}

/* A block whose second word holds its slab's key looks free.  Every free
 * block carries that mark and malloc clears it, so only a program's own data
 * can mimic it, and it must guess a random key.  One compare, as glibc's
 * tcache tests its entries' key word: the owner then confirms with
 * slab_find_free_block(). */
static inline bool slab_block_looks_free(const gpa_slab_t *s, const gpa_block_t *b) {
  return b->free_mark == s->key;
}

/* Whether the owner's list holds a block.  An index past the carved
 * blocks is the list's end, or a link a program overwrote: the slow path
 * tells them apart (slab_check_list_end). */
static inline bool slab_has_free(const gpa_slab_t *s) { return s->free_index < s->capacity; }

/* Take the first block of the owner's list (which must hold one).  The
 * link it leaves at the head is checked before it is followed, by the
 * next pop's slab_has_free: a program that overwrites a freed block can
 * only make malloc hand out another block of this slab. */
static inline gpa_block_t *slab_pop_block(gpa_slab_t *s) {
  gpa_block_t *b = slab_block_at(s, s->free_index);
  s->free_index = (uint32_t)(b->next_encoded ^ s->key);
  s->used++;
  b->free_mark = 0; /* a live block must not look free to free() */
  return b;
}

/* Put block `index` on the front of the owner's list. */
static inline void slab_push_block(gpa_slab_t *s, gpa_block_t *b, uint32_t index) {
  b->next_encoded = s->free_index ^ s->key;
  b->free_mark = s->key;
  s->free_index = index;
}

void slab_init(gpa_slab_t *s, uint8_t *start, unsigned cls, unsigned pages);
void slab_extend(gpa_slab_t *s);
GPA_COLD __attribute__((noreturn)) void slab_report_list_head(const gpa_slab_t *s);

/* For a slab with no free block (!slab_has_free): its head must be the
 * list's end, not a link past its blocks. */
static inline void slab_check_list_end(const gpa_slab_t *s) {
  if (GPA_UNLIKELY(s->free_index != GPA_LIST_END)) slab_report_list_head(s);
}
bool slab_collect(gpa_slab_t *s);
bool slab_find_free_block(gpa_slab_t *s, const gpa_block_t *b);
bool slab_push_remote(gpa_slab_t *s, gpa_block_t *b);
bool slab_try_mark_full(gpa_slab_t *s);
uint32_t slab_live_blocks(const gpa_slab_t *s);

/* Blocks handed out (uncollected remote frees included), parked or not. */
static inline uint32_t slab_used_blocks(const gpa_slab_t *s) { return s->in_full ? s->parked_used : s->used; }

/* Low bit of thread_free (blocks are 16-aligned): the slab sits on its
 * heap's full list, and the next remote free must wake the heap. */
#define SLAB_FULL_FLAG ((uintptr_t)1)
void slab_check(const gpa_slab_t *s);

/* ---- segments ---------------------------------------------------------- */
gpa_segment_t *segment_small_acquire(struct gpa_instance *inst, gpa_heap_t *owner);
void segment_small_release(gpa_segment_t *seg);
gpa_slab_t *segment_slab_alloc(gpa_segment_t *seg, unsigned cls);
void segment_slab_free(gpa_segment_t *seg, gpa_slab_t *s);
void segment_purge(gpa_segment_t *seg);
void segment_age_dirty(gpa_segment_t *seg);

/* ---- heaps ------------------------------------------------------------- */

/* The calling thread's heap of the default instance; starts as the empty
 * heap (all direct slots point at an empty slab) so the fast path needs no
 * NULL test. */
extern __thread gpa_heap_t *gpa_tls_heap __attribute__((tls_model("initial-exec")));
extern gpa_heap_t gpa_empty_heap;
extern gpa_slab_t gpa_empty_slab;
extern gpa_heap_t gpa_large_owner; /* owner of every large segment */

void *heap_malloc_generic(gpa_heap_t *h, size_t size);
void *heap_malloc_class(gpa_heap_t *h, unsigned cls);
void heap_free_slow(gpa_heap_t *h, gpa_slab_t *s);
void heap_free_remote(gpa_slab_t *s, gpa_block_t *b);
typedef enum { HEAP_COLLECT_IDLE, HEAP_COLLECT_TRIM } heap_collect_mode_t;
void heap_collect(gpa_heap_t *h, heap_collect_mode_t mode);
gpa_heap_t *heap_for_thread(void);
void heap_init(gpa_heap_t *h, struct gpa_instance *inst);
void heap_thread_exit(gpa_heap_t *h);
void heap_count_live(const gpa_heap_t *h, size_t *blocks, size_t *bytes);
/* A fresh secret word for a new slab of `h` (slab_init). */
uintptr_t heap_random_word(gpa_heap_t *h);

/* The calling thread's heap, set up on first use; NULL (ENOMEM) if no
 * memory can be had for it.  For slow paths: the fast path tests nothing. */
static inline gpa_heap_t *heap_current(void) {
  gpa_heap_t *h = gpa_tls_heap;
  if (GPA_UNLIKELY(h == &gpa_empty_heap) && (h = heap_for_thread()) == NULL) errno = ENOMEM;
  return h;
}

/* The fast path alone: a block from the size's current slab, or NULL when
 * there is none (the empty heap never has one). */
static inline void *heap_malloc_direct(gpa_heap_t *h, size_t size) {
  if (GPA_LIKELY(size <= GPA_DIRECT_MAX)) {
    gpa_slab_t *s = h->direct[(size + 15) >> 4];
    if (GPA_LIKELY(slab_has_free(s))) return slab_pop_block(s);
  }
  return NULL;
}

static inline void *heap_malloc(gpa_heap_t *h, size_t size) {
  void *p = heap_malloc_direct(h, size);
  if (GPA_LIKELY(p != NULL)) return p;
  return heap_malloc_generic(h, size);
}

/* The owner's free of block `index`: push onto the slab's list; the slab's
 * last live block or a parked slab (whose `used` is held at 1) takes the
 * slow path. */
static inline void heap_free_to_own_slab(gpa_heap_t *h, gpa_slab_t *s, gpa_block_t *b, uint32_t index) {
  slab_push_block(s, b, index);
  if (GPA_UNLIKELY(--s->used == 0)) heap_free_slow(h, s);
}

/* ---- pointers handed back (free.c) ---------------------------------------
 * What every call that takes a block back asks after its inline fast path
 * (free, realloc, malloc_usable_size, and gpa_t's free, resize, remap and
 * owns): what is this pointer? */
typedef enum {
  BLOCK_NOT_OURS,     /* outside every segment, and no over-aligned block */
  BLOCK_INTERIOR,     /* in a segment, but not the start of a block */
  BLOCK_FREED,        /* the start of a block that is free already */
  BLOCK_SMALL,        /* a live slab block: seg, slab, index */
  BLOCK_LARGE,        /* a live large block: seg */
  BLOCK_OVERALIGNED,  /* a live over-aligned block */
} block_kind_t;

typedef struct block_ref {
  gpa_segment_t *seg;            /* small and large blocks */
  gpa_slab_t *slab;              /* small: its slab */
  uint32_t index;                /* small: its index there */
  size_t usable;                 /* live blocks: the usable size; freed small ones: the block size */
  struct gpa_instance *instance; /* live blocks */
} block_ref_t;

/* Classify a non-NULL `p` for a thread whose heap in the block's instance is
 * `h` (a freed small block is confirmed on its lists only by its owner). */
block_kind_t block_classify(const void *p, gpa_heap_t *h, block_ref_t *out);
/* The same for `op`, which takes only live blocks: misuse gets its one-line
 * report (the same words for every call) and abort(). */
block_kind_t block_classify_live(const char *op, const void *p, gpa_heap_t *h, block_ref_t *out);

/* Every free the fast path does not finish (free.c): NULL, large and
 * over-aligned blocks, other threads' blocks, and misuse. */
void heap_free_slow_path(gpa_heap_t *h, void *p);

/* The fast path alone: `h`'s own valid small block goes back to its slab;
 * false (nothing done) for anything else.  NULL needs no test of its own:
 * no segment starts at address 0. */
static inline bool heap_free_own(gpa_heap_t *h, void *p) {
  gpa_segment_t *seg = segment_of(p);
  if (GPA_LIKELY(segmap_contains(seg) && seg->owner == h)) {
    gpa_slab_t *s = slab_of(seg, p);
    gpa_block_t *b = p;
    uint32_t index;
    if (GPA_LIKELY(slab_block_index(s, p, &index) && !slab_block_looks_free(s, b))) {
      heap_free_to_own_slab(h, s, b, index);
      return true;
    }
  }
  return false;
}

/* Free `p` from a thread whose heap (in the block's instance) is `h`: the
 * empty heap if it has none, and then every free takes the remote path. */
static inline void heap_free(gpa_heap_t *h, void *p) {
  if (GPA_LIKELY(heap_free_own(h, p))) return;
  heap_free_slow_path(h, p);
}

/* ---- large objects ----------------------------------------------------- */

/* Whether `size` bytes get a mapping of their own (the large path) rather
 * than a slab block: above GPA_SMALL_MAX always, above GPA_SLAB_SINGLE_MIN
 * while the instance's live large blocks are few (GPA_LARGE_MAPPINGS_MAX). */
static inline bool size_takes_mapping(const struct gpa_instance *inst, size_t size) {
  if (size <= GPA_SLAB_SINGLE_MIN) return false;
  if (size > GPA_SMALL_MAX) return true;
  return atomic_load_explicit(&inst->large_count, memory_order_relaxed) < GPA_LARGE_MAPPINGS_MAX;
}

void *large_alloc(struct gpa_instance *inst, size_t size, size_t alignment, bool *zeroed);
void large_free(gpa_segment_t *seg);
void *large_realloc(gpa_segment_t *seg, size_t size);
size_t large_usable_size(const gpa_segment_t *seg);
void large_cache_flush(struct gpa_instance *inst);
void large_release_all(struct gpa_instance *inst);
bool large_resize_in_place(gpa_segment_t *seg, size_t size);
struct gpa_instance *large_overaligned_instance(const void *p);

/* Blocks aligned to more than half a segment live outside the segment map
 * (their pointer is itself segment-aligned); free() asks here before it
 * calls a pointer foreign. */
bool large_overaligned_contains(const void *p);
void large_overaligned_free(void *p);
size_t large_overaligned_usable_size(const void *p);

/* ---- instance ---------------------------------------------------------- */
extern gpa_instance_t gpa_default_instance;

/* Each thread's heap in each explicit instance it uses: a small table
 * indexed by instance id (ids are never reused, so a slot naming a dead
 * instance never matches a live one).  Two instances sharing a slot take
 * turns: the one evicted gets its heap back and the thread takes another. */
#define GPA_THREAD_INSTANCE_SLOTS 8
typedef struct gpa_thread_heap_slot {
  uint64_t id;
  gpa_heap_t *heap;
} gpa_thread_heap_slot_t;
extern __thread gpa_thread_heap_slot_t gpa_tls_instance_heaps[GPA_THREAD_INSTANCE_SLOTS]
    __attribute__((tls_model("initial-exec")));
gpa_heap_t *instance_thread_heap_slow(gpa_instance_t *inst);

/* The calling thread's heap in an explicit instance, set up on first use;
 * NULL (ENOMEM) if none can be had.  A single-thread instance's one heap
 * sits in the slot of whichever thread uses it, so both kinds take the same
 * fast path. */
static inline gpa_heap_t *instance_thread_heap(gpa_instance_t *inst) {
  gpa_thread_heap_slot_t *slot = &gpa_tls_instance_heaps[inst->id % GPA_THREAD_INSTANCE_SLOTS];
  if (GPA_LIKELY(slot->id == inst->id)) return slot->heap;
  return instance_thread_heap_slow(inst);
}

/* The same without setting one up: the empty heap when the thread has none
 * (frees through it take the remote path, which is always correct). */
static inline gpa_heap_t *instance_thread_heap_if_any(gpa_instance_t *inst) {
  if (!inst->thread_safe) return inst->single_heap;
  gpa_thread_heap_slot_t *slot = &gpa_tls_instance_heaps[inst->id % GPA_THREAD_INSTANCE_SLOTS];
  return slot->id == inst->id ? slot->heap : &gpa_empty_heap;
}

void instance_slot_set_default(gpa_heap_t *h);
void instance_slot_clear_default(void);
gpa_instance_t *instance_create(bool thread_safe);
/* The same without the process set-up (whose pthread_atfork allocates),
 * for a caller deciding what malloc is before it may allocate. */
gpa_instance_t *instance_create_early(bool thread_safe);
/* Functions fork() calls for a layer above the core's locks: prepare before
 * the core's, parent and child after.  False when the few slots are taken. */
bool instance_add_fork_hook(void (*prepare)(void), void (*parent)(void), void (*child)(void));
/* Functions called around each heap's release by its thread (at thread
 * exit, or when the thread's slot goes to another instance), which may
 * give segments back: a layer that walks an instance's blocks
 * (instance_for_each_block) holds its walks off meanwhile.  False when the
 * few slots are taken. */
bool instance_add_heap_exit_hook(void (*before)(void), void (*after)(void));
void instance_destroy(gpa_instance_t *inst, size_t *live_blocks, size_t *live_bytes);
void instance_count_live(gpa_instance_t *inst, size_t *blocks, size_t *bytes);
void instance_ensure_process_init(void);
gpa_heap_t *instance_heap_acquire(gpa_instance_t *inst);
void instance_heap_release(gpa_instance_t *inst, gpa_heap_t *h);
void instance_register_thread(gpa_heap_t *h);
void instance_lock(gpa_instance_t *inst);
void instance_unlock(gpa_instance_t *inst);
bool instance_trim(gpa_instance_t *inst);

/* ---- operations (malloc.c, free.c, realloc.c, aligned.c) ---------------- */
void *heap_malloc_aligned(gpa_heap_t *h, size_t alignment, size_t size);
void *gpa_core_malloc(size_t size);
void *gpa_core_calloc(size_t count, size_t size);
void gpa_core_free(void *p);
void *gpa_core_realloc(void *p, size_t size);
void *gpa_core_aligned(size_t alignment, size_t size);
size_t gpa_core_usable_size(const void *p);

/* The block an address falls in, for the debug layer: any byte of a carved
 * small block or of a live large one, or the start of an over-aligned one.
 * looks_free: the core's own mark says the block is free (a hint: program
 * data can mimic it). */
typedef struct gpa_block_info {
  uint8_t *start;
  size_t size;
  struct gpa_instance *instance;
  bool looks_free;
} gpa_block_info_t;
bool block_find(const void *p, gpa_block_info_t *out);

/* Every block an instance has carved, handed out or free, small and large:
 * `visit` gets each block's start and usable size.  The caller keeps every
 * thread from allocating or freeing in the instance meanwhile (the walk
 * holds only the instance's lock); the debug layer finds its live blocks
 * this way instead of keeping a list. */
typedef void (*gpa_block_visit_fn)(void *ctx, uint8_t *start, size_t size);
void instance_for_each_block(gpa_instance_t *inst, gpa_block_visit_fn visit, void *ctx);
void heap_for_each_block(const gpa_heap_t *h, gpa_block_visit_fn visit, void *ctx);
/* Under the instance's lock: its live large and over-aligned blocks (none
 * for the process instance, which keeps no list of them). */
void large_for_each_block(gpa_instance_t *inst, gpa_block_visit_fn visit, void *ctx);


/* ---- reports (report.c) ------------------------------------------------ */
GPA_COLD __attribute__((noreturn)) void report_invalid_free(const char *op, const void *p, const char *why);
GPA_COLD __attribute__((noreturn)) void report_double_free(const char *op, const void *p, size_t block_size);
/* "gpa: <op>(): corrupted free list in the slab of N-byte blocks at S: a
 * link names 0x..., not one of its blocks": freed memory was written to. */
GPA_COLD __attribute__((noreturn)) void report_corrupt_free_list(const char *op, const void *slab_start,
                                                                 size_t block_size, uintptr_t target);
/* "gpa: allocator used <what> (state at 0x...)" */
GPA_COLD __attribute__((noreturn)) void report_allocator_state(const void *state, const char *what);
GPA_COLD __attribute__((noreturn)) void report_wrong_instance(const char *op, const void *p, const void *owner,
                                                              const void *used);
/* "gpa: <name>: leaked N allocation(s), M byte(s)"; returns. */
GPA_COLD void report_leak_summary(const char *name, size_t blocks, size_t bytes);
GPA_COLD __attribute__((noreturn)) void report_bad_size(const char *op, const void *p, size_t given,
                                                        size_t block_size);

#endif /* GPA_INTERNAL_H */

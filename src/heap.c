/*
 * heap.c: per-thread heaps.  A heap owns segments and, per size class, a
 * queue of slabs with room; its thread allocates and frees through it with no
 * lock and no atomic read-modify-write.  Everything here is a slow path: the
 * fast paths are heap_malloc() in internal.h and gpa_core_free() in free.c.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "os.h"
#include "size_class.h"

gpa_slab_t gpa_empty_slab = { .free_index = GPA_LIST_END }; /* never has a free block */
gpa_heap_t gpa_empty_heap = {
  .direct = { [0 ... GPA_DIRECT_SLOTS - 1] = &gpa_empty_slab },
};
gpa_heap_t gpa_large_owner;
__thread gpa_heap_t *gpa_tls_heap __attribute__((tls_model("initial-exec"))) = &gpa_empty_heap;

/* ---- slab queues ------------------------------------------------------- */

static void queue_remove(gpa_slab_queue_t *q, gpa_slab_t *s) {
  if (s->prev) s->prev->next = s->next; else q->first = s->next;
  if (s->next) s->next->prev = s->prev; else q->last = s->prev;
  s->next = s->prev = NULL;
}

static void queue_push_front(gpa_slab_queue_t *q, gpa_slab_t *s) {
  s->prev = NULL;
  s->next = q->first;
  if (q->first) q->first->prev = s; else q->last = s;
  q->first = s;
}

static void queue_push_back(gpa_slab_queue_t *q, gpa_slab_t *s) {
  s->next = NULL;
  s->prev = q->last;
  if (q->last) q->last->next = s; else q->first = s;
  q->last = s;
}

/* Point the direct slots of `cls` at its queue's first slab.  Invariant:
 * a direct slot holds its class's first queued slab or the empty slab. */
static void heap_update_direct(gpa_heap_t *h, unsigned cls) {
  size_t size = size_class_block_size(cls);
  if (size > GPA_DIRECT_MAX) return;
  size_t lo = cls == 0 ? 0 : size_class_block_size(cls - 1) / 16 + 1;
  gpa_slab_t *s = h->queues[cls].first ? h->queues[cls].first : &gpa_empty_slab;
  for (size_t i = lo; i <= size / 16; i++) h->direct[i] = s;
}

void heap_init(gpa_heap_t *h, gpa_instance_t *inst) {
  memset(h, 0, sizeof *h);
  for (size_t i = 0; i < GPA_DIRECT_SLOTS; i++) h->direct[i] = &gpa_empty_slab;
  h->instance = inst;
}

uintptr_t heap_random_word(gpa_heap_t *h) {
  if (h->random_left == 0) {
    os_random_fill(h->random_pool, sizeof h->random_pool);
    h->random_left = GPA_HEAP_RANDOM_WORDS;
  }
  /* Never 0: a zero key would make a zeroed word look like a free mark. */
  return h->random_pool[--h->random_left] | 1;
}

/* ---- segments of a heap ------------------------------------------------ */

/* A heap keeps its segments on two lists: those with free pages, where new
 * slabs are looked for, and the full ones, which that search skips. */
static bool segment_is_full(const gpa_segment_t *seg) { return seg->free_pages == 0; }

static gpa_segment_list_t *heap_segment_list(gpa_heap_t *h, bool full) {
  return full ? &h->full_segments : &h->segments;
}

/* The list with room runs newest first, the order new slabs look for
 * pages in.  A new segment goes in front; one that regains pages goes back
 * to its place by age among the first HEAP_SEGMENT_SEARCH (the only ones
 * searched), or behind them. */
#define HEAP_SEGMENT_SEARCH 16

static void heap_add_segment(gpa_heap_t *h, gpa_segment_t *seg, bool full) {
  gpa_segment_list_t *list = heap_segment_list(h, full);
  gpa_segment_t *after = NULL; /* insert after this one (NULL: in front) */
  if (!full) {
    unsigned looked = 0;
    for (gpa_segment_t *s = list->first; s != NULL && s->heap_order > seg->heap_order; s = s->next) {
      after = s;
      if (++looked == HEAP_SEGMENT_SEARCH) {
        after = list->last;
        break;
      }
    }
  }
  seg->prev = after;
  seg->next = after != NULL ? after->next : list->first;
  if (seg->next != NULL) seg->next->prev = seg; else list->last = seg;
  if (after != NULL) after->next = seg; else list->first = seg;
}

static void heap_remove_segment(gpa_heap_t *h, gpa_segment_t *seg, bool full) {
  gpa_segment_list_t *list = heap_segment_list(h, full);
  if (seg->prev) seg->prev->next = seg->next; else list->first = seg->next;
  if (seg->next) seg->next->prev = seg->prev; else list->last = seg->prev;
  seg->next = seg->prev = NULL;
}

/* New slabs are looked for in the first HEAP_SEGMENT_SEARCH segments with
 * room before a new segment is taken: a heap of thousands of segments
 * (one-block slabs of big classes) does not walk them all per slab, and
 * full ones are on a list of their own. */
static gpa_slab_t *heap_slab_in_segment(gpa_heap_t *h, gpa_segment_t *seg, unsigned cls) {
  gpa_slab_t *s = segment_slab_alloc(seg, cls);
  if (s != NULL && segment_is_full(seg)) {
    heap_remove_segment(h, seg, false);
    heap_add_segment(h, seg, true);
  }
  return s;
}

static gpa_slab_t *heap_new_slab(gpa_heap_t *h, unsigned cls) {
  unsigned searched = 0;
  for (gpa_segment_t *seg = h->segments.first, *next; seg != NULL && searched++ < HEAP_SEGMENT_SEARCH; seg = next) {
    next = seg->next;
    gpa_slab_t *s = heap_slab_in_segment(h, seg, cls);
    if (s != NULL) return s;
  }
  gpa_segment_t *seg = segment_small_acquire(h->instance, h);
  if (seg == NULL) return NULL;
  seg->heap_order = ++h->segments_taken;
  h->segment_count++;
  heap_add_segment(h, seg, false);
  return heap_slab_in_segment(h, seg, cls);
}

/* An empty slab leaves its queue; its pages go back to the segment, and an
 * empty segment leaves the heap. */
static void heap_retire_slab(gpa_heap_t *h, gpa_slab_t *s) {
  GPA_INVARIANT("retired-slab-empty", s->used == 0);
  gpa_segment_t *seg = segment_of(s->start);
  GPA_INVARIANT("slab-owned-by-heap", seg->owner == h);
  unsigned cls = s->class_index;
  queue_remove(&h->queues[cls], s);
  heap_update_direct(h, cls); /* no direct slot may outlive its slab */
  unsigned pages = s->page_count;
  bool was_full = segment_is_full(seg);
  segment_slab_free(seg, s);
  if (seg->used_pages == 0) {
    heap_remove_segment(h, seg, was_full);
    h->segment_count--;
    segment_small_release(seg);
  } else if (was_full) {
    heap_remove_segment(h, seg, true);
    heap_add_segment(h, seg, false);
  }
  /* Dirty pages age by the heap's own activity, not by a clock: each
   * GPA_PURGE_THRESHOLD bytes of slabs retired is one generation for all of
   * its segments, so a burst of frees returns memory across the heap even
   * if the program then goes quiet. */
  h->retired_pages += pages;
  /* ... and no more often than once per page retired per segment of the
   * heap, so a heap of thousands of segments does not walk them all per
   * slab (other heaps' segments do not slow this one's aging). */
  if ((size_t)h->retired_pages * GPA_PAGE_SIZE >= GPA_PURGE_THRESHOLD && h->retired_pages >= h->segment_count) {
    h->retired_pages = 0;
    /* Full segments have no free page to age. */
    for (gpa_segment_t *each = h->segments.first; each != NULL; each = each->next) segment_age_dirty(each);
  }
}

/* ---- full slabs -------------------------------------------------------- */

/* A parked slab's count is set aside and `used` set to 1, so the owner's
 * next free into it brings `used` to 0: the free fast path then needs one
 * test for both "last live block" and "parked". */
static void heap_park_slab(gpa_heap_t *h, gpa_slab_t *s) {
  queue_remove(&h->queues[s->class_index], s);
  s->in_full = 1;
  s->parked_used = s->used;
  s->used = 1;
  queue_push_back(&h->full, s);
}

/* `freed`: the owner's free that brought the parked count to 0 (that block
 * is already on the free list). */
static void heap_unpark_slab(gpa_heap_t *h, gpa_slab_t *s, bool freed) {
  GPA_INVARIANT("parked-count-untouched", s->used == (freed ? 0u : 1u));
  s->used = s->parked_used - (freed ? 1 : 0);
  s->in_full = 0;
  queue_remove(&h->full, s);
  atomic_fetch_and_explicit(&s->thread_free, ~SLAB_FULL_FLAG, memory_order_relaxed);
  slab_collect(s);
  queue_push_back(&h->queues[s->class_index], s);
}

/* Move full slabs that remote frees have refilled back to their queues. */
static void heap_rescue_full(gpa_heap_t *h) {
  atomic_store_explicit(&h->remote_pending, 0, memory_order_relaxed);
  gpa_slab_t *next;
  for (gpa_slab_t *s = h->full.first; s != NULL; s = next) {
    next = s->next;
    if ((atomic_load_explicit(&s->thread_free, memory_order_acquire) & ~SLAB_FULL_FLAG) != 0)
      heap_unpark_slab(h, s, false);
  }
}

/* ---- allocation slow path ---------------------------------------------- */

/* Checked builds: every direct slot holds its class's first slab. */
static void heap_check_direct(const gpa_heap_t *h) {
#if GPA_CHECKS_ENABLED
  for (size_t i = 0; i < GPA_DIRECT_SLOTS; i++) {
    const gpa_slab_t *s = h->direct[i];
    if (s == &gpa_empty_slab) continue;
    GPA_INVARIANT("direct-slot-is-class-head", s->in_use && h->queues[s->class_index].first == s);
    GPA_INVARIANT("direct-slot-class-fits", size_class_block_size(s->class_index) >= i * 16);
  }
#else
  (void)h;
#endif
}

/* A slab of class `cls` with a free block, made the class's current slab. */
static gpa_slab_t *heap_find_slab(gpa_heap_t *h, unsigned cls) {
  if (atomic_load_explicit(&h->remote_pending, memory_order_relaxed)) heap_rescue_full(h);
  gpa_slab_queue_t *q = &h->queues[cls];
  gpa_slab_t *s, *next;
  for (s = q->first; s != NULL; s = next) {
    next = s->next;
    if (slab_has_free(s)) break;
    slab_check_list_end(s);
    if (slab_collect(s)) break;
    if (s->capacity < s->reserved) {
      slab_extend(s);
      break;
    }
    /* Full: park it where the allocation path no longer walks over it. */
    if (!slab_try_mark_full(s)) {
      slab_collect(s); /* a remote free raced in: use it */
      break;
    }
    heap_park_slab(h, s);
  }
  if (s == NULL) {
    s = heap_new_slab(h, cls);
    if (s == NULL) {
      /* The walk may have parked the current slab: the direct slots must
       * not keep pointing at it. */
      heap_update_direct(h, cls);
      return NULL;
    }
    slab_extend(s);
    queue_push_front(q, s);
  } else if (q->first != s) {
    queue_remove(q, s);
    queue_push_front(q, s);
  }
  heap_update_direct(h, cls);
  heap_check_direct(h);
  GPA_INVARIANT("slab-owned-by-heap", segment_of(s->start)->owner == h);
  GPA_INVARIANT("slab-of-class", s->class_index == cls && s->in_use);
  slab_check(s);
  return s;
}

void *heap_malloc_class(gpa_heap_t *h, unsigned cls) {
  /* Classes above GPA_DIRECT_MAX have no direct slot: their current slab
   * is the queue's first, and only an empty one needs the search. */
  gpa_slab_t *s = h->queues[cls].first;
  if (s == NULL || !slab_has_free(s)) s = heap_find_slab(h, cls);
  if (GPA_UNLIKELY(s == NULL)) {
    errno = ENOMEM;
    return NULL;
  }
  return slab_pop_block(s);
}

GPA_NOINLINE void *heap_malloc_generic(gpa_heap_t *h, size_t size) {
  if (GPA_UNLIKELY(h == &gpa_empty_heap) && (h = heap_current()) == NULL) return NULL;
  if (size_takes_mapping(h->instance, size)) {
    bool zeroed;
    return large_alloc(h->instance, size, GPA_MIN_ALIGN, &zeroed);
  }
  return heap_malloc_class(h, size_class_of(size));
}

/* ---- free slow paths --------------------------------------------------- */

/* The owner freed the slab's last live block, or freed into a parked slab. */
GPA_NOINLINE void heap_free_slow(gpa_heap_t *h, gpa_slab_t *s) {
  GPA_INVARIANT("slab-owned-by-heap", segment_of(s->start)->owner == h);
  if (s->in_full) heap_unpark_slab(h, s, true);
  /* Keep the class's current slab even when empty: a program that frees
   * and allocates one block in a loop must not map and unmap a slab each
   * time.  Any other empty slab goes back to its segment. */
  if (s->used == 0 && h->queues[s->class_index].first != s) heap_retire_slab(h, s);
}

/* A free from a thread that does not own the block's heap. */
void heap_free_remote(gpa_slab_t *s, gpa_block_t *b) {
  /* Read the owner before the push: afterwards the slab may be reclaimed.
   * Heaps themselves are never unmapped, so writing to one stays safe. */
  gpa_heap_t *owner = segment_of(s->start)->owner;
  if (slab_push_remote(s, b)) atomic_store_explicit(&owner->remote_pending, 1, memory_order_release);
}

/* Collect every remote free and retire empty slabs: all but the classes'
 * current ones (HEAP_COLLECT_IDLE), or all of them and then purge every
 * dirty page (HEAP_COLLECT_TRIM). */
void heap_collect(gpa_heap_t *h, heap_collect_mode_t mode) {
  bool retire_current = mode == HEAP_COLLECT_TRIM;
  heap_rescue_full(h);
  gpa_slab_t *s, *next;
  for (s = h->full.first; s != NULL; s = next) {
    next = s->next;
    slab_check(s);
  }
  for (unsigned cls = 0; cls < GPA_CLASS_COUNT; cls++) {
    for (s = h->queues[cls].first; s != NULL; s = next) {
      next = s->next;
      slab_collect(s);
      slab_check(s);
      if (s->used == 0 && (retire_current || h->queues[cls].first != s)) heap_retire_slab(h, s);
    }
  }
  if (mode == HEAP_COLLECT_TRIM)
    for (gpa_segment_t *seg = h->segments.first; seg != NULL; seg = seg->next) segment_purge(seg); /* full ones have none */
}

/* Add the heap's live blocks and their bytes to the running totals. */
void heap_count_live(const gpa_heap_t *h, size_t *blocks, size_t *bytes) {
  for (unsigned cls = 0; cls <= GPA_CLASS_COUNT; cls++) {
    const gpa_slab_queue_t *q = cls < GPA_CLASS_COUNT ? &h->queues[cls] : &h->full;
    for (const gpa_slab_t *s = q->first; s != NULL; s = s->next) {
      uint32_t live = slab_live_blocks(s);
      *blocks += live;
      *bytes += (size_t)live * s->block_size;
    }
  }
}

void heap_for_each_block(const gpa_heap_t *h, gpa_block_visit_fn visit, void *ctx) {
  for (unsigned cls = 0; cls <= GPA_CLASS_COUNT; cls++) {
    const gpa_slab_queue_t *q = cls < GPA_CLASS_COUNT ? &h->queues[cls] : &h->full;
    for (const gpa_slab_t *s = q->first; s != NULL; s = s->next)
      for (uint32_t i = 0; i < s->capacity; i++) visit(ctx, s->start + (size_t)i * s->block_size, s->block_size);
  }
}

/* ---- threads ----------------------------------------------------------- */

gpa_heap_t *heap_for_thread(void) {
  instance_ensure_process_init();
  gpa_heap_t *h = instance_heap_acquire(&gpa_default_instance);
  if (h == NULL) return NULL;
  /* Set the heap first: pthread_setspecific may allocate for high keys. */
  gpa_tls_heap = h;
  instance_register_thread(h);
  return h;
}

/* The thread is exiting: collect its remote frees and let the next new
 * thread adopt the heap whole, so short-lived threads neither strand memory
 * nor make their successors fault in pages the heap already had: retiring
 * and purging at exit cost mstress 20 times the page faults. */
void heap_thread_exit(gpa_heap_t *h) {
  if (h == NULL || h == &gpa_empty_heap) return;
  if (gpa_tls_heap == h) {
    gpa_tls_heap = &gpa_empty_heap;
    instance_slot_clear_default();
  }
  heap_collect(h, HEAP_COLLECT_IDLE);
  instance_heap_release(h->instance, h);
}

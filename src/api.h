/*
 * api.h: what the files behind gpa.h's explicit API share: the tags a live
 * or deinitialised gpa_t carries, and the check every call through a
 * general-purpose allocator value makes before touching a block.
 */
#ifndef GPA_API_H
#define GPA_API_H

#include <stdint.h>

#include "gpa.h"
#include "internal.h"

/* gpa_t.tag values: the bytes spell "gpa-live" and "gpa-dead" in memory. */
#define GPA_STATE_LIVE 0x6576696c2d617067ull
#define GPA_STATE_DEAD 0x646165642d617067ull

/* gpa_t.id after gpa_deinit: ids count up from 1, so no slot holds this. */
#define GPA_STATE_DEAD_ID UINT64_MAX


GPA_COLD __attribute__((noreturn)) void api_report_state(const gpa_t *g, uintptr_t frame);

/* The lowest address of the calling thread's stack, found once per thread
 * (UINTPTR_MAX when the thread library cannot tell). */
extern __thread uintptr_t api_tls_stack_low __attribute__((tls_model("initial-exec")));
uintptr_t api_stack_low_slow(void);

/* A state on this thread's stack below `frame` (the user's stack pointer at
 * the call) lies in a frame that has returned: every live frame is above.  The test reads
 * nothing from the state itself, whose dead bytes may have been reused. */
static inline bool api_state_in_returned_frame(const gpa_t *g, uintptr_t frame) {
  uintptr_t at = (uintptr_t)g;
  if (GPA_LIKELY(at >= frame)) return false;
  uintptr_t low = api_tls_stack_low;
  if (GPA_UNLIKELY(low == 0)) low = api_stack_low_slow();
  return at >= low;
}

/* A live state that is not in a returned frame.  `frame` is the user's
 * stack pointer at the call. */
static inline bool api_state_usable(const gpa_t *g, uintptr_t frame) {
  return g != NULL && g->tag == GPA_STATE_LIVE && !api_state_in_returned_frame(g, frame);
}

/* The calling thread's heap for g's instance when its slot holds one, else
 * NULL.  The fast paths below test the state through this lookup rather
 * than through its tag: gpa_deinit sets the id to GPA_STATE_DEAD_ID, which
 * no slot holds, and a state never set up matches no slot either (an empty
 * slot's heap is NULL), so both go to the slow path, which checks the tag
 * and reports. */
static inline gpa_heap_t *api_slot_heap(const gpa_t *g) {
  const gpa_thread_heap_slot_t *slot = &gpa_tls_instance_heaps[g->id % GPA_THREAD_INSTANCE_SLOTS];
  return slot->id == g->id ? slot->heap : NULL;
}

/* Everything the fast paths below do not finish (api_gpa.c): the full state
 * check with its report, heap set-up, large and aligned blocks, misuse.
 * A failed allocation sets errno (ENOMEM) there. */
void *api_gpa_alloc_slow(gpa_t *g, size_t len, size_t alignment, uintptr_t frame);
void api_gpa_free_slow(gpa_t *g, void *p, size_t len, uintptr_t frame);

/* Allocation through a gpa_t.  `alignment` is a power of two. */
static inline void *api_gpa_alloc(gpa_t *g, size_t len, size_t alignment, uintptr_t frame) {
  if (GPA_LIKELY(g != NULL && !api_state_in_returned_frame(g, frame) && alignment <= GPA_MIN_ALIGN)) {
    gpa_heap_t *h = api_slot_heap(g);
    if (GPA_LIKELY(h != NULL)) return heap_malloc(h, len);
  }
  return api_gpa_alloc_slow(g, len, alignment, frame);
}

/* Free through a gpa_t.  The fast path: a small block of this thread's
 * heap, hence of this instance, whose block holds `len` bytes. */
static inline void api_gpa_free(gpa_t *g, void *p, size_t len, uintptr_t frame) {
  if (GPA_LIKELY(g != NULL && !api_state_in_returned_frame(g, frame))) {
    gpa_heap_t *h = api_slot_heap(g);
    gpa_segment_t *seg = segment_of(p);
    if (GPA_LIKELY(h != NULL && segmap_contains(seg) && seg->owner == h)) {
      gpa_slab_t *s = slab_of(seg, p);
      gpa_block_t *b = p;
      uint32_t index;
      if (GPA_LIKELY(slab_block_index(s, p, &index) && !slab_block_looks_free(s, b) && len <= s->block_size)) {
        heap_free_to_own_slab(h, s, b, index);
        return;
      }
    }
  }
  api_gpa_free_slow(g, p, len, frame);
}

/* For the raw helpers' other calls (allocator.c): check a gpa_t's state
 * against the user's frame before going through the vtable. */
static inline void api_check_call(gpa_allocator_t a, uintptr_t caller_frame) {
  if (a.vtable == &gpa_instance_vtable && !api_state_usable((const gpa_t *)a.ctx, caller_frame))
    api_report_state((const gpa_t *)a.ctx, caller_frame);
}

#endif /* GPA_API_H */

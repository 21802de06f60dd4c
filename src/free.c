/*
 * free.c: giving a block back.  The fast path (internal.h) is the owner
 * freeing a small block; everything else asks the one pointer classifier
 * (block_classify), as realloc, malloc_usable_size and gpa_t's checks do,
 * and takes a named slow path.
 */
#include "internal.h"

block_kind_t block_classify(const void *p, gpa_heap_t *h, block_ref_t *out) {
  gpa_segment_t *seg = segment_of(p);
  if (!segmap_contains(seg)) {
    if (!large_overaligned_contains(p)) return BLOCK_NOT_OURS;
    out->seg = NULL;
    out->usable = large_overaligned_usable_size(p);
    out->instance = large_overaligned_instance(p);
    return BLOCK_OVERALIGNED;
  }
  out->seg = seg;
  out->instance = seg->instance;
  if (seg->kind == GPA_SEGMENT_LARGE) {
    if (seg->large_ptr == NULL) return BLOCK_FREED; /* a cached mapping */
    if (p != seg->large_ptr) return BLOCK_INTERIOR;
    out->usable = large_usable_size(seg);
    return BLOCK_LARGE;
  }
  gpa_slab_t *s = slab_of(seg, p);
  out->slab = s;
  out->usable = s->block_size;
  if (!slab_block_index(s, p, &out->index)) return BLOCK_INTERIOR;
  /* The owner confirms a free mark on its lists (program data can mimic
   * it); another thread may not walk them: the mark alone decides, as
   * malloc clears it on every block it hands out. */
  const gpa_block_t *b = p;
  if (GPA_UNLIKELY(slab_block_looks_free(s, b)) && (seg->owner != h || slab_find_free_block(s, b)))
    return BLOCK_FREED;
  return BLOCK_SMALL;
}

block_kind_t block_classify_live(const char *op, const void *p, gpa_heap_t *h, block_ref_t *out) {
  block_kind_t kind = block_classify(p, h, out);
  switch (kind) {
  case BLOCK_NOT_OURS: report_invalid_free(op, p, "not allocated by gpa");
  case BLOCK_INTERIOR: report_invalid_free(op, p, "not the start of a block");
  /* A large block's size is gone with it (0: not named). */
  case BLOCK_FREED: report_double_free(op, p, out->seg->kind == GPA_SEGMENT_LARGE ? 0 : out->usable);
  default: return kind;
  }
}

/* Every free the fast path does not finish: large and over-aligned blocks,
 * other threads' blocks, and misuse (reported, then abort).  A second free
 * of a small block would put it on a list twice (on the remote list: a
 * cycle): the classifier catches it. */
GPA_NOINLINE void heap_free_slow_path(gpa_heap_t *h, void *p) {
  if (p == NULL) return;
  block_ref_t ref;
  switch (block_classify_live("free", p, h, &ref)) {
  case BLOCK_OVERALIGNED: large_overaligned_free(p); break;
  case BLOCK_LARGE: large_free(ref.seg); break;
  default:
    if (ref.seg->owner == h) heap_free_to_own_slab(h, ref.slab, p, ref.index);
    else heap_free_remote(ref.slab, p);
  }
}

void gpa_core_free(void *p) { heap_free(gpa_tls_heap, p); }

bool block_find(const void *p, gpa_block_info_t *out) {
  gpa_segment_t *seg = segment_of(p);
  if (!segmap_contains(seg)) {
    if (!large_overaligned_contains(p)) return false;
    out->start = (uint8_t *)p;
    out->size = large_overaligned_usable_size(p);
    out->instance = large_overaligned_instance(p);
    out->looks_free = false;
    return true;
  }
  out->instance = seg->instance;
  if (seg->kind == GPA_SEGMENT_LARGE) {
    if (seg->large_ptr == NULL) return false;
    size_t usable = large_usable_size(seg);
    if ((uintptr_t)p - (uintptr_t)seg->large_ptr >= usable) return false;
    out->start = seg->large_ptr;
    out->size = usable;
    out->looks_free = false;
    return true;
  }
  gpa_slab_t *s = slab_of(seg, p);
  uintptr_t offset = (uintptr_t)p - (uintptr_t)s->start;
  if (!s->in_use || offset >= atomic_load_explicit(&s->carved_bytes, memory_order_relaxed)) return false;
  out->start = s->start + offset / s->block_size * s->block_size;
  out->size = s->block_size;
  out->looks_free = slab_block_looks_free(s, (const gpa_block_t *)out->start);
  return true;
}

size_t gpa_core_usable_size(const void *p) {
  if (p == NULL) return 0;
  block_ref_t ref;
  block_classify_live("malloc_usable_size", p, gpa_tls_heap, &ref);
  return ref.usable;
}

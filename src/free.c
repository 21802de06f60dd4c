/*
 * free.c: giving a block back.  The fast path is the owner freeing a small
 * block; remote frees, large objects and misuse take named slow paths.
 */
#include "internal.h"

/* Every free the fast path did not finish: large blocks, other threads'
 * blocks, and misuse (reported, then abort). */
static void heap_free_generic(gpa_heap_t *h, gpa_segment_t *seg, void *p) {
  if (seg->kind == GPA_SEGMENT_LARGE) {
    if (GPA_UNLIKELY(p != seg->large_ptr)) {
      if (seg->large_ptr == NULL) report_invalid_free("free", p, "not a live allocation (double free of a large block?)");
      report_invalid_free("free", p, "points inside a large block, not at its start");
    }
    large_free(seg);
    return;
  }
  gpa_slab_t *s = slab_of(seg, p);
  uint32_t index;
  if (GPA_UNLIKELY(!slab_block_index(s, p, &index)))
    report_invalid_free("free", p, "not the start of a block");
  /* A second free would put the block on a list twice (on the remote list:
   * a cycle). */
  slab_check_not_freed("free", h, s, p);
  if (seg->owner == h) heap_free_to_own_slab(h, s, p, index);
  else heap_free_remote(s, p);
}

void slab_check_not_freed(const char *op, gpa_heap_t *h, gpa_slab_t *s, const void *p) {
  const gpa_block_t *b = p;
  if (GPA_LIKELY(!slab_block_looks_free(s, b))) return;
  /* The owner confirms on its lists (program data can mimic the mark).
   * Another thread may not walk them: the mark alone decides, as malloc
   * clears it on every block it hands out. */
  if (segment_of(s->start)->owner != h || slab_find_free_block(s, b)) report_double_free(op, p, s->block_size);
}

/* A pointer outside every segment: NULL, over-aligned, or not ours. */
static void heap_free_outside_segments(void *p) {
  if (p == NULL) return;
  if (!large_overaligned_contains(p)) report_invalid_free("free", p, "not allocated by gpa");
  large_overaligned_free(p);
}

GPA_NOINLINE void heap_free_slow_path(gpa_heap_t *h, void *p) {
  gpa_segment_t *seg = segment_of(p);
  if (!segmap_contains(seg)) heap_free_outside_segments(p);
  else heap_free_generic(h, seg, p);
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

size_t block_usable_size(gpa_segment_t *seg, const void *p) {
  if (seg->kind == GPA_SEGMENT_LARGE) return large_usable_size(seg);
  return slab_of(seg, p)->block_size;
}

size_t gpa_core_usable_size(const void *p) {
  if (p == NULL) return 0;
  gpa_segment_t *seg = segment_of(p);
  if (!segmap_contains(seg)) {
    if (large_overaligned_contains(p)) return large_overaligned_usable_size(p);
    report_invalid_free("malloc_usable_size", p, "not allocated by gpa");
  }
  if (seg->kind == GPA_SEGMENT_LARGE) {
    if (p != seg->large_ptr) report_invalid_free("malloc_usable_size", p, "not a live large block");
    return large_usable_size(seg);
  }
  gpa_slab_t *s = slab_of(seg, p);
  if (!slab_is_block_start(s, p)) report_invalid_free("malloc_usable_size", p, "not the start of a block");
  slab_check_not_freed("malloc_usable_size", gpa_tls_heap, s, p);
  return s->block_size;
}

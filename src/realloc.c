/*
 * realloc.c: resizing a block: in place where it fits, by moving pages for
 * large objects, and by copy otherwise.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* Blocks up to this size are never moved to shrink: a smaller class would
 * save at most this many bytes. */
#define REALLOC_KEEP_SMALL 128

void *gpa_core_realloc(void *p, size_t size) {
  if (p == NULL) return gpa_core_malloc(size);
  if (size == 0) { /* glibc: realloc(p, 0) frees and returns NULL */
    gpa_core_free(p);
    return NULL;
  }
  gpa_segment_t *seg = segment_of(p);
  size_t old_usable;
  if (GPA_UNLIKELY(!segmap_contains(seg))) {
    /* An over-aligned block moves like any other; realloc keeps only the
     * alignment malloc gives. */
    if (!large_overaligned_contains(p)) report_invalid_free("realloc", p, "not allocated by gpa");
    old_usable = large_overaligned_usable_size(p);
  } else if (seg->kind == GPA_SEGMENT_LARGE) {
    if (p != seg->large_ptr) report_invalid_free("realloc", p, "not a live large block");
    if (size_takes_mapping(seg->instance, size)) return large_realloc(seg, size);
    old_usable = large_usable_size(seg);
  } else {
    gpa_slab_t *s = slab_of(seg, p);
    if (!slab_is_block_start(s, p)) report_invalid_free("realloc", p, "not the start of a block");
    slab_check_not_freed("realloc", gpa_tls_heap, s, p);
    old_usable = s->block_size;
    /* Stay put while the block fits and at most half of it goes unused
     * (or the block is so small that moving would save nothing). */
    if (size <= old_usable && (size >= old_usable / 2 || old_usable <= REALLOC_KEEP_SMALL)) return p;
  }
  void *q = gpa_core_malloc(size);
  if (q == NULL) return NULL; /* the old block stays intact */
  /* Copy what the caller may have written: the old usable size, bounded by
   * the new request (never the new usable size, which may be larger). */
  memcpy(q, p, old_usable < size ? old_usable : size);
  gpa_core_free(p);
  return q;
}

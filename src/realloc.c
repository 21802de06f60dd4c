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
  block_ref_t ref;
  switch (block_classify_live("realloc", p, gpa_tls_heap, &ref)) {
  case BLOCK_LARGE:
    if (size_takes_mapping(ref.instance, size)) return large_realloc(ref.seg, size);
    break;
  case BLOCK_SMALL:
    /* Stay put while the block fits and at most half of it goes unused
     * (or the block is so small that moving would save nothing). */
    if (size <= ref.usable && (size >= ref.usable / 2 || ref.usable <= REALLOC_KEEP_SMALL)) return p;
    break;
  default: /* an over-aligned block moves like any other; realloc keeps only
            * the alignment malloc gives */
    break;
  }
  size_t old_usable = ref.usable;
  void *q = gpa_core_malloc(size);
  if (q == NULL) return NULL; /* the old block stays intact */
  /* Copy what the caller may have written: the old usable size, bounded by
   * the new request (never the new usable size, which may be larger). */
  memcpy(q, p, old_usable < size ? old_usable : size);
  gpa_core_free(p);
  return q;
}

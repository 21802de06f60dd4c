/*
 * aligned.c: allocation at a power-of-two alignment.  Small requests use a
 * class whose block size is a multiple of the alignment (slabs start on page
 * boundaries, so its blocks are aligned); bigger ones are large objects.
 */
#include <errno.h>

#include "internal.h"
#include "size_class.h"

void *heap_malloc_aligned(gpa_heap_t *h, size_t alignment, size_t size) {
  if (alignment <= GPA_MIN_ALIGN) return heap_malloc(h, size);
  if (size == 0) size = 1; /* like malloc(0): a unique block that can be written */
  unsigned cls = size_takes_mapping(h->instance, size) ? GPA_CLASS_COUNT : size_class_for_aligned(size, alignment);
  if (cls < GPA_CLASS_COUNT) return heap_malloc_class(h, cls);
  bool zeroed;
  return large_alloc(h->instance, size, alignment, &zeroed);
}

void *gpa_core_aligned(size_t alignment, size_t size) {
  if (alignment <= GPA_MIN_ALIGN) return gpa_core_malloc(size);
  gpa_heap_t *h = heap_current();
  if (h == NULL) return NULL;
  return heap_malloc_aligned(h, alignment, size);
}

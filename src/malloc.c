/*
 * malloc.c: allocation through the calling thread's heap.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

void *gpa_core_malloc(size_t size) {
  return heap_malloc(gpa_tls_heap, size);
}

void *gpa_core_calloc(size_t count, size_t size) {
  size_t total;
  if (GPA_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  if (total > GPA_SLAB_SINGLE_MIN) {
    gpa_heap_t *h = heap_current();
    if (h == NULL) return NULL;
    if (size_takes_mapping(h->instance, total)) {
      /* Fresh mappings come zeroed from the kernel: skip the memset. */
      bool zeroed;
      void *p = large_alloc(h->instance, total, GPA_MIN_ALIGN, &zeroed);
      if (p != NULL && !zeroed) memset(p, 0, total);
      return p;
    }
  }
  void *p = heap_malloc(gpa_tls_heap, total);
  if (GPA_LIKELY(p != NULL)) memset(p, 0, total);
  return p;
}

/*
 * size_class.h: the small size classes.
 *
 * 16..128 bytes in steps of 16, then four classes per doubling up to
 * GPA_SMALL_MAX, so a request wastes at most a fifth of its block above 64
 * bytes.  Every class is a multiple of 16, and every power of two is a class,
 * which aligned allocation relies on.  Classes above GPA_SLAB_SINGLE_MIN are
 * whole numbers of slab pages, a slab holding one block.
 */
#ifndef GPA_SIZE_CLASS_H
#define GPA_SIZE_CLASS_H

#include <stddef.h>
#include <stdint.h>

#include "types.h"

extern const uint32_t gpa_class_size_table[GPA_CLASS_COUNT];

/* The smallest class whose blocks hold `size` bytes; size <= GPA_SMALL_MAX. */
static inline unsigned size_class_of(size_t size) {
  if (size <= 128) return size == 0 ? 0 : (unsigned)((size - 1) >> 4);
  unsigned top = 63u - (unsigned)__builtin_clzll((unsigned long long)(size - 1)); /* size-1 in [2^top, 2^(top+1)) */
  unsigned quarter = (unsigned)((size - 1) >> (top - 2)) & 3u;
  return 8u + (top - 7u) * 4u + quarter;
}

static inline size_t size_class_block_size(unsigned cls) {
  return gpa_class_size_table[cls];
}

/* Pages (GPA_PAGE_SIZE) in a slab of this class. */
unsigned size_class_slab_pages(unsigned cls);

/* The smallest class that holds `size` bytes at an `alignment` boundary
 * (a power of two <= GPA_PAGE_SIZE), or GPA_CLASS_COUNT if there is none. */
unsigned size_class_for_aligned(size_t size, size_t alignment);

#endif /* GPA_SIZE_CLASS_H */

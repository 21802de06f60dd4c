/*
 * size_class.c: the class table and the shape of each class's slabs.
 */
#include "size_class.h"

const uint32_t gpa_class_size_table[GPA_CLASS_COUNT] = {
  16, 32, 48, 64, 80, 96, 112, 128,
  160, 192, 224, 256, 320, 384, 448, 512,
  640, 768, 896, 1024, 1280, 1536, 1792, 2048,
  2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
  10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
  40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
  163840, 196608, 229376, 262144, 327680, 393216, 458752, 524288,
  655360, 786432, 917504, 1048576,
};

unsigned size_class_slab_pages(unsigned cls) {
  size_t size = size_class_block_size(cls);
  if (size > GPA_SLAB_SINGLE_MIN) return (unsigned)((size + GPA_PAGE_SIZE - 1) / GPA_PAGE_SIZE); /* one block */
  size_t want = (size_t)GPA_SLAB_MIN_BLOCKS * size;
  size_t pages = (want + GPA_PAGE_SIZE - 1) / GPA_PAGE_SIZE;
  if (pages < 1) pages = 1;
  if (pages > GPA_SLAB_MAX_PAGES) pages = GPA_SLAB_MAX_PAGES;
  return (unsigned)pages;
}

unsigned size_class_for_aligned(size_t size, size_t alignment) {
  if (size > GPA_SMALL_MAX || alignment > GPA_PAGE_SIZE) return GPA_CLASS_COUNT;
  /* Slabs start on a page boundary, so a block is aligned when its class
   * size is a multiple of the alignment. */
  for (unsigned cls = size_class_of(size < alignment ? alignment : size); cls < GPA_CLASS_COUNT; cls++) {
    if ((size_class_block_size(cls) & (alignment - 1)) == 0) return cls;
  }
  return GPA_CLASS_COUNT;
}

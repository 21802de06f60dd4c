/*
 * large.c: objects above GPA_SMALL_MAX.  Each is a mapping of its own,
 * aligned like a segment so free() finds its header by masking; the header
 * page sits in front of the user's pointer.  A few freed mappings are kept
 * for reuse (GPA_LARGE_CACHE_*), and realloc moves pages with mremap instead
 * of copying bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "os.h"

/* Alignments up to half a segment keep the user's pointer inside the first
 * segment-sized stretch of the mapping, where the mask finds the header. */
#define LARGE_MAX_ALIGN (GPA_SEGMENT_SIZE / 2)

static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

/* Mappings are rounded up to one of eight sizes per doubling: the rounding
 * costs address space, not memory (untouched pages are never resident), and
 * lets freed mappings be reused for requests of nearby sizes. */
static size_t large_mapping_size(size_t bytes) {
  size_t page = os_page_size();
  size_t rounded = round_up(bytes, page);
  if (rounded < bytes) return SIZE_MAX; /* overflow: the reservation fails */
  unsigned top = 63u - (unsigned)__builtin_clzll((unsigned long long)rounded);
  size_t step = top > 3 ? (size_t)1 << (top - 3) : page;
  if (step < page) step = page;
  size_t classed = round_up(rounded, step);
  return classed < rounded ? rounded : classed;
}

static size_t header_offset(size_t alignment) {
  size_t page = os_page_size();
  return alignment > page ? alignment : page;
}

/* A cached mapping that fits `need` bytes without wasting more than half. */
static gpa_segment_t *large_cache_take(gpa_instance_t *inst, size_t need) {
  gpa_segment_t *found = NULL;
  instance_lock(inst);
  for (size_t i = 0; i < GPA_LARGE_CACHE_SLOTS; i++) {
    gpa_segment_t *seg = inst->large_cache[i];
    if (seg != NULL && seg->mapped_size >= need && seg->mapped_size / 2 <= need) {
      inst->large_cache[i] = NULL;
      inst->large_cache_bytes -= seg->mapped_size;
      found = seg;
      break;
    }
  }
  instance_unlock(inst);
  return found;
}

static bool large_cache_put(gpa_instance_t *inst, gpa_segment_t *seg) {
  bool kept = false;
  instance_lock(inst);
  if (inst->large_cache_bytes + seg->mapped_size <= GPA_LARGE_CACHE_MAX_BYTES) {
    for (size_t i = 0; i < GPA_LARGE_CACHE_SLOTS; i++) {
      if (inst->large_cache[i] == NULL) {
        inst->large_cache[i] = seg;
        inst->large_cache_bytes += seg->mapped_size;
        kept = true;
        break;
      }
    }
  }
  instance_unlock(inst);
  return kept;
}

static void large_unmap(gpa_instance_t *inst, gpa_segment_t *seg) {
  size_t size = seg->mapped_size;
  segmap_remove(seg);
  atomic_fetch_sub_explicit(&inst->large_mapped, size, memory_order_relaxed);
  os_release(seg, size);
}

/* ---- over-aligned blocks ------------------------------------------------
 * An alignment above LARGE_MAX_ALIGN makes the pointer segment-aligned, so
 * masking it would land on the user's bytes.  Such a block gets a small
 * header just in front of it and a bit in a map of its own; it is rare, so
 * only the paths that already failed the segment map look there. */
typedef struct overaligned_header {
  gpa_instance_t *instance;
  uint8_t *base;       /* the mapping */
  size_t mapped_size;
  size_t size;         /* bytes requested */
} overaligned_header_t;

#define OVERALIGNED_HEADER_SPACE 64 /* header rounded to a cache line */
static _Atomic(uint64_t) overaligned_map[GPA_SEGMAP_WORDS];

static overaligned_header_t *overaligned_header(const void *p) {
  return (overaligned_header_t *)((uintptr_t)p - OVERALIGNED_HEADER_SPACE);
}

static void *large_alloc_overaligned(gpa_instance_t *inst, size_t size, size_t alignment) {
  size_t page = os_page_size();
  size_t total = round_up(alignment + size, page);
  if (total < size) {
    errno = ENOMEM;
    return NULL;
  }
  uint8_t *base = os_reserve_aligned(total, alignment);
  if (base == NULL) return NULL;
  uint8_t *p = base + alignment;
  overaligned_header_t *h = overaligned_header(p);
  h->instance = inst;
  h->base = base;
  h->mapped_size = total;
  h->size = size;
  addrmap_insert(overaligned_map, p);
  atomic_fetch_add_explicit(&inst->large_mapped, total, memory_order_relaxed);
  atomic_fetch_add_explicit(&inst->large_in_use, size, memory_order_relaxed);
  atomic_fetch_add_explicit(&inst->large_count, 1, memory_order_relaxed);
  return p;
}

bool large_overaligned_contains(const void *p) {
  return ((uintptr_t)p & GPA_SEGMENT_MASK) == 0 && addrmap_contains(overaligned_map, p);
}

size_t large_overaligned_usable_size(const void *p) {
  const overaligned_header_t *h = overaligned_header(p);
  return h->mapped_size - (size_t)((const uint8_t *)p - h->base);
}

void large_overaligned_free(void *p) {
  overaligned_header_t *h = overaligned_header(p);
  gpa_instance_t *inst = h->instance;
  addrmap_remove(overaligned_map, p);
  atomic_fetch_sub_explicit(&inst->large_mapped, h->mapped_size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_in_use, h->size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_count, 1, memory_order_relaxed);
  os_release(h->base, h->mapped_size);
}

/* ---- ordinary large blocks --------------------------------------------- */

void *large_alloc(gpa_instance_t *inst, size_t size, size_t alignment, bool *zeroed) {
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  if (alignment > LARGE_MAX_ALIGN) {
    *zeroed = true;
    return large_alloc_overaligned(inst, size, alignment);
  }
  size_t offset = header_offset(alignment);
  size_t need = large_mapping_size(offset + size);
  gpa_segment_t *seg = large_cache_take(inst, need);
  *zeroed = seg == NULL;
  if (seg == NULL) {
    seg = os_reserve_aligned(need, GPA_SEGMENT_SIZE);
    if (seg == NULL) return NULL;
    seg->mapped_size = need;
    atomic_fetch_add_explicit(&inst->large_mapped, need, memory_order_relaxed);
    segmap_insert(seg);
  }
  seg->owner = &gpa_large_owner;
  seg->instance = inst;
  seg->kind = GPA_SEGMENT_LARGE;
  seg->large_ptr = (uint8_t *)seg + offset;
  seg->large_size = size;
  atomic_fetch_add_explicit(&inst->large_in_use, size, memory_order_relaxed);
  atomic_fetch_add_explicit(&inst->large_count, 1, memory_order_relaxed);
  return seg->large_ptr;
}

void large_free(gpa_segment_t *seg) {
  gpa_instance_t *inst = seg->instance;
  atomic_fetch_sub_explicit(&inst->large_in_use, seg->large_size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_count, 1, memory_order_relaxed);
  seg->large_ptr = NULL; /* a second free of this pointer is now caught */
  seg->large_size = 0;
  if (!large_cache_put(inst, seg)) large_unmap(inst, seg);
}

size_t large_usable_size(const gpa_segment_t *seg) {
  return seg->mapped_size - (size_t)(seg->large_ptr - (const uint8_t *)seg);
}

/* Resize in place, or move the pages (no copy).  NULL and ENOMEM when the
 * kernel refuses, the block then untouched. */
void *large_realloc(gpa_segment_t *seg, size_t size) {
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  gpa_instance_t *inst = seg->instance;
  size_t offset = (size_t)(seg->large_ptr - (uint8_t *)seg);
  size_t need = round_up(offset + size, os_page_size());
  size_t old = seg->mapped_size;
  if (need != old) {
    if (os_remap_in_place(seg, old, need)) {
      seg->mapped_size = need;
    } else if (need > old) {
      gpa_segment_t *moved = os_remap_aligned(seg, old, need, GPA_SEGMENT_SIZE);
      if (moved == NULL) return NULL;
      segmap_remove(seg);
      segmap_insert(moved);
      seg = moved;
      seg->mapped_size = need;
      seg->large_ptr = (uint8_t *)seg + offset;
    }
    /* A shrink the kernel refused keeps the bigger mapping: still correct. */
    if (seg->mapped_size >= old)
      atomic_fetch_add_explicit(&inst->large_mapped, seg->mapped_size - old, memory_order_relaxed);
    else
      atomic_fetch_sub_explicit(&inst->large_mapped, old - seg->mapped_size, memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&inst->large_in_use, size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_in_use, seg->large_size, memory_order_relaxed);
  seg->large_size = size;
  return seg->large_ptr;
}

void large_cache_flush(gpa_instance_t *inst) {
  gpa_segment_t *taken[GPA_LARGE_CACHE_SLOTS];
  instance_lock(inst);
  for (size_t i = 0; i < GPA_LARGE_CACHE_SLOTS; i++) {
    taken[i] = inst->large_cache[i];
    inst->large_cache[i] = NULL;
  }
  inst->large_cache_bytes = 0;
  instance_unlock(inst);
  for (size_t i = 0; i < GPA_LARGE_CACHE_SLOTS; i++)
    if (taken[i] != NULL) large_unmap(inst, taken[i]);
}

/*
 * large.c: objects with a mapping each (size_takes_mapping: above
 * GPA_SMALL_MAX, or above GPA_SLAB_SINGLE_MIN while few are live),
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

/* How many bytes of freed mappings the cache may keep: as many as live
 * large blocks hold, within [GPA_LARGE_CACHE_MIN_BYTES,
 * GPA_LARGE_CACHE_MAX_BYTES].  A program cycling big buffers then reuses
 * resident pages instead of faulting in fresh zeroed ones, and one that
 * frees its big blocks for good gives the memory back. */
static size_t large_cache_limit(gpa_instance_t *inst) {
  size_t limit = atomic_load_explicit(&inst->large_in_use, memory_order_relaxed);
  if (limit < GPA_LARGE_CACHE_MIN_BYTES) limit = GPA_LARGE_CACHE_MIN_BYTES;
  if (limit > GPA_LARGE_CACHE_MAX_BYTES) limit = GPA_LARGE_CACHE_MAX_BYTES;
  return limit;
}

/* Remove cache slot `i`, keeping the rest in order (oldest first). */
static gpa_segment_t *large_cache_remove(gpa_instance_t *inst, size_t i) {
  gpa_segment_t *seg = inst->large_cache[i];
  inst->large_cache_bytes -= seg->mapped_size;
  inst->large_cache_count--;
  for (; i < inst->large_cache_count; i++) inst->large_cache[i] = inst->large_cache[i + 1];
  inst->large_cache[inst->large_cache_count] = NULL;
  return seg;
}

/* Cached mappings taken for one request. */
typedef struct large_pieces {
  gpa_segment_t *seg[GPA_LARGE_CACHE_SLOTS];
  size_t count;
  size_t bytes;
} large_pieces_t;

/* Take from the cache what best serves `need` bytes: the smallest mapping
 * that holds them; failing that, mappings largest first until they cover
 * `need` or the cache is empty (their pages are then moved side by side). */
static void large_cache_take(gpa_instance_t *inst, size_t need, large_pieces_t *out) {
  out->count = 0;
  out->bytes = 0;
  instance_lock(inst);
  size_t fit = SIZE_MAX;
  for (size_t i = 0; i < inst->large_cache_count; i++) {
    size_t size = inst->large_cache[i]->mapped_size;
    if (size >= need && (fit == SIZE_MAX || size < inst->large_cache[fit]->mapped_size)) fit = i;
  }
  if (fit != SIZE_MAX) {
    out->bytes = inst->large_cache[fit]->mapped_size;
    out->seg[out->count++] = large_cache_remove(inst, fit);
  }
  while (out->bytes < need && inst->large_cache_count > 0) {
    size_t largest = 0;
    for (size_t i = 1; i < inst->large_cache_count; i++)
      if (inst->large_cache[i]->mapped_size > inst->large_cache[largest]->mapped_size) largest = i;
    out->bytes += inst->large_cache[largest]->mapped_size;
    out->seg[out->count++] = large_cache_remove(inst, largest);
  }
  instance_unlock(inst);
}

static void large_unmap(gpa_instance_t *inst, gpa_segment_t *seg);

/* Keep a freed mapping if the limit allows, evicting the oldest ones. */
static void large_cache_put(gpa_instance_t *inst, gpa_segment_t *seg) {
  gpa_segment_t *evicted[GPA_LARGE_CACHE_SLOTS + 1];
  size_t evicted_count = 0;
  instance_lock(inst);
  size_t limit = large_cache_limit(inst);
  if (seg->mapped_size > limit) {
    evicted[evicted_count++] = seg;
  } else {
    if (inst->large_cache_count == GPA_LARGE_CACHE_SLOTS) evicted[evicted_count++] = large_cache_remove(inst, 0);
    inst->large_cache[inst->large_cache_count++] = seg;
    inst->large_cache_bytes += seg->mapped_size;
  }
  while (inst->large_cache_bytes > limit) evicted[evicted_count++] = large_cache_remove(inst, 0);
  instance_unlock(inst);
  for (size_t i = 0; i < evicted_count; i++) large_unmap(inst, evicted[i]);
}

static void large_unmap(gpa_instance_t *inst, gpa_segment_t *seg) {
  size_t size = seg->mapped_size;
  segmap_remove(seg);
  atomic_fetch_sub_explicit(&inst->large_mapped, size, memory_order_relaxed);
  os_release(seg, size);
}

/* Explicit instances keep their live large blocks on a list, so deinit can
 * unmap them; the process instance never deinitialises and skips it. */
static bool large_tracked(const gpa_instance_t *inst) { return inst != &gpa_default_instance; }

static void large_live_link(gpa_instance_t *inst, gpa_segment_t *seg) {
  if (!large_tracked(inst)) return;
  instance_lock(inst);
  seg->prev = NULL;
  seg->next = inst->large_live;
  if (inst->large_live != NULL) inst->large_live->prev = seg;
  inst->large_live = seg;
  instance_unlock(inst);
}

static void large_live_unlink(gpa_instance_t *inst, gpa_segment_t *seg) {
  if (!large_tracked(inst)) return;
  instance_lock(inst);
  if (seg->prev != NULL) seg->prev->next = seg->next; else inst->large_live = seg->next;
  if (seg->next != NULL) seg->next->prev = seg->prev;
  seg->next = seg->prev = NULL;
  instance_unlock(inst);
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
  struct overaligned_header *next, *prev; /* the instance's live ones (explicit instances) */
} overaligned_header_t;

#define OVERALIGNED_HEADER_SPACE 64 /* header rounded to a cache line */
static _Atomic(uint64_t) overaligned_map[GPA_ADDRMAP_WORDS];

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
  h->prev = NULL;
  h->next = NULL;
  if (large_tracked(inst)) {
    instance_lock(inst);
    h->next = inst->overaligned_live;
    if (h->next != NULL) h->next->prev = h;
    inst->overaligned_live = h;
    instance_unlock(inst);
  }
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

gpa_instance_t *large_overaligned_instance(const void *p) { return overaligned_header(p)->instance; }

void large_overaligned_free(void *p) {
  overaligned_header_t *h = overaligned_header(p);
  gpa_instance_t *inst = h->instance;
  if (large_tracked(inst)) {
    instance_lock(inst);
    if (h->prev != NULL) h->prev->next = h->next; else inst->overaligned_live = h->next;
    if (h->next != NULL) h->next->prev = h->prev;
    instance_unlock(inst);
  }
  addrmap_remove(overaligned_map, p);
  atomic_fetch_sub_explicit(&inst->large_mapped, h->mapped_size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_in_use, h->size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_count, 1, memory_order_relaxed);
  os_release(h->base, h->mapped_size);
}

/* ---- ordinary large blocks --------------------------------------------- */

/* Give a mapping much bigger than `need` its tail back to the cache, cut at
 * the first segment boundary past `need` (unmapping the tail would throw its
 * resident pages away). */
static void large_trim(gpa_instance_t *inst, gpa_segment_t *seg, size_t need) {
  size_t old = seg->mapped_size;
  size_t split = (need + GPA_SEGMENT_MASK) & ~GPA_SEGMENT_MASK;
  if (old <= split || old - split < GPA_SEGMENT_SIZE) return;
  gpa_segment_t *tail = (gpa_segment_t *)((uint8_t *)seg + split);
  tail->owner = &gpa_large_owner;
  tail->instance = inst;
  tail->kind = GPA_SEGMENT_LARGE;
  tail->large_ptr = NULL;
  tail->large_size = 0;
  tail->mapped_size = old - split;
  segmap_insert(tail);
  seg->mapped_size = split;
  large_cache_put(inst, tail);
}

/* A mapping of at least `need` bytes made of cached pieces: one that holds
 * them is used in place; several are moved side by side into a fresh
 * reservation, topped up with fresh pages when they fall short.  Moving
 * pages costs a page-table update where fresh pages would each cost a fault
 * and a clear, which is what a program cycling big buffers pays otherwise.
 * NULL (pieces unmapped) when the kernel refuses the reservation. */
static gpa_segment_t *large_from_pieces(gpa_instance_t *inst, large_pieces_t *pieces, size_t need) {
  gpa_segment_t *seg;
  if (pieces->count == 1 && pieces->bytes >= need) {
    seg = pieces->seg[0];
  } else {
    size_t total = pieces->bytes > need ? pieces->bytes : need;
    uint8_t *dest = os_reserve_aligned(total, GPA_SEGMENT_SIZE);
    if (dest != NULL) atomic_fetch_add_explicit(&inst->large_mapped, total, memory_order_relaxed);
    size_t offset = 0;
    for (size_t i = 0; i < pieces->count; i++) {
      gpa_segment_t *piece = pieces->seg[i];
      size_t size = piece->mapped_size;
      if (dest == NULL) {
        large_unmap(inst, piece);
        continue;
      }
      segmap_remove(piece);
      os_move_pages(piece, size, dest + offset);
      atomic_fetch_sub_explicit(&inst->large_mapped, size, memory_order_relaxed);
      offset += size;
    }
    if (dest == NULL) return NULL;
    seg = (gpa_segment_t *)dest;
    seg->mapped_size = total;
    segmap_insert(seg);
  }
  large_trim(inst, seg, need);
  return seg;
}

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
  large_pieces_t pieces;
  large_cache_take(inst, need, &pieces);
  gpa_segment_t *seg = pieces.count > 0 ? large_from_pieces(inst, &pieces, need) : NULL;
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
  large_live_link(inst, seg);
  atomic_fetch_add_explicit(&inst->large_in_use, size, memory_order_relaxed);
  atomic_fetch_add_explicit(&inst->large_count, 1, memory_order_relaxed);
  return seg->large_ptr;
}

void large_free(gpa_segment_t *seg) {
  gpa_instance_t *inst = seg->instance;
  atomic_fetch_sub_explicit(&inst->large_in_use, seg->large_size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_count, 1, memory_order_relaxed);
  large_live_unlink(inst, seg);
  seg->large_ptr = NULL; /* a second free of this pointer is now caught */
  seg->large_size = 0;
  large_cache_put(inst, seg);
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
  if (need < old) {
    /* Unmapping the tail works whatever mappings the block is made of. */
    os_release((uint8_t *)seg + need, old - need);
    seg->mapped_size = need;
    atomic_fetch_sub_explicit(&inst->large_mapped, old - need, memory_order_relaxed);
  } else if (need > old) {
    if (!os_remap_in_place(seg, old, need)) {
      large_live_unlink(inst, seg); /* its neighbours would point at the old place */
      /* Out of the map before the move unmaps the old place: from then on
       * another thread may map a segment there, whose entry this must not
       * erase.  Nothing else may free this block meanwhile. */
      segmap_remove(seg);
      gpa_segment_t *moved = os_remap_aligned(seg, old, need, GPA_SEGMENT_SIZE);
      if (moved == NULL) {
        segmap_insert(seg); /* still mapped, so still nobody else's */
        large_live_link(inst, seg);
        return NULL;
      }
      segmap_insert(moved);
      seg = moved;
      seg->large_ptr = (uint8_t *)seg + offset;
      large_live_link(inst, seg);
    }
    seg->mapped_size = need;
    atomic_fetch_add_explicit(&inst->large_mapped, need - old, memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&inst->large_in_use, size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_in_use, seg->large_size, memory_order_relaxed);
  seg->large_size = size;
  return seg->large_ptr;
}

void large_cache_flush(gpa_instance_t *inst) {
  gpa_segment_t *taken[GPA_LARGE_CACHE_SLOTS];
  size_t count = 0;
  instance_lock(inst);
  while (inst->large_cache_count > 0) taken[count++] = large_cache_remove(inst, 0);
  instance_unlock(inst);
  for (size_t i = 0; i < count; i++) large_unmap(inst, taken[i]);
}

/* Change a block's length without moving it: within its mapping, or by
 * growing the mapping where the address space after it is free. */
bool large_resize_in_place(gpa_segment_t *seg, size_t size) {
  if (size > PTRDIFF_MAX) return false;
  gpa_instance_t *inst = seg->instance;
  size_t offset = (size_t)(seg->large_ptr - (uint8_t *)seg);
  size_t need = round_up(offset + size, os_page_size());
  size_t old = seg->mapped_size;
  if (need > old) {
    if (!os_remap_in_place(seg, old, need)) return false;
    seg->mapped_size = need;
    atomic_fetch_add_explicit(&inst->large_mapped, need - old, memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&inst->large_in_use, size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inst->large_in_use, seg->large_size, memory_order_relaxed);
  seg->large_size = size;
  return true;
}

void large_for_each_block(gpa_instance_t *inst, gpa_block_visit_fn visit, void *ctx) {
  for (gpa_segment_t *seg = inst->large_live; seg != NULL; seg = seg->next)
    visit(ctx, seg->large_ptr, large_usable_size(seg));
  for (overaligned_header_t *h = inst->overaligned_live; h != NULL; h = h->next) {
    uint8_t *p = (uint8_t *)h + OVERALIGNED_HEADER_SPACE;
    visit(ctx, p, large_overaligned_usable_size(p));
  }
}

/* Deinit of an explicit instance: unmap its live large blocks, over-aligned
 * ones included, and its cache. */
void large_release_all(gpa_instance_t *inst) {
  for (gpa_segment_t *seg = inst->large_live, *next; seg != NULL; seg = next) {
    next = seg->next;
    large_unmap(inst, seg);
  }
  inst->large_live = NULL;
  for (overaligned_header_t *h = inst->overaligned_live, *next; h != NULL; h = next) {
    next = h->next;
    addrmap_remove(overaligned_map, (uint8_t *)h + OVERALIGNED_HEADER_SPACE);
    os_release(h->base, h->mapped_size);
  }
  inst->overaligned_live = NULL;
  large_cache_flush(inst);
}

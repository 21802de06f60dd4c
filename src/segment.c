/*
 * segment.c: small segments: where slabs live.  Finds runs of free pages,
 * hands dirty pages back to the kernel, and keeps the segment map that tells
 * our pointers from foreign ones.
 */
#include <string.h>

#include "internal.h"
#include "os.h"
#include "size_class.h"

_Atomic(uint8_t) gpa_segmap[GPA_ADDRESS_SLOTS];

void segmap_insert(const gpa_segment_t *seg) {
  uintptr_t index = (uintptr_t)seg >> GPA_SEGMENT_SHIFT;
  GPA_INVARIANT("segment-in-address-space", index < GPA_ADDRESS_SLOTS);
  atomic_store_explicit(&gpa_segmap[index], 1, memory_order_release);
}

void segmap_remove(const gpa_segment_t *seg) {
  atomic_store_explicit(&gpa_segmap[(uintptr_t)seg >> GPA_SEGMENT_SHIFT], 0, memory_order_release);
}

void addrmap_insert(_Atomic(uint64_t) *map, const void *addr) {
  uintptr_t index = (uintptr_t)addr >> GPA_SEGMENT_SHIFT;
  GPA_INVARIANT("address-in-address-space", index < GPA_ADDRESS_SLOTS);
  atomic_fetch_or_explicit(&map[index / 64], (uint64_t)1 << (index % 64), memory_order_release);
}

void addrmap_remove(_Atomic(uint64_t) *map, const void *addr) {
  uintptr_t index = (uintptr_t)addr >> GPA_SEGMENT_SHIFT;
  atomic_fetch_and_explicit(&map[index / 64], ~((uint64_t)1 << (index % 64)), memory_order_release);
}

/* Every page but the header page. */
#define ALL_SLAB_PAGES (~(uint64_t)1)

static void segment_init_small(gpa_segment_t *seg, gpa_instance_t *inst, gpa_heap_t *owner) {
  seg->owner = owner;
  seg->instance = inst;
  seg->kind = GPA_SEGMENT_SMALL;
  seg->used_pages = 0;
  seg->free_pages = ALL_SLAB_PAGES;
  seg->mapped_size = GPA_SEGMENT_SIZE;
  seg->large_ptr = NULL;
  seg->large_size = 0;
  seg->dirty_pages = 0;
  seg->aged_pages = 0;
  seg->next = seg->prev = NULL;
  /* Page 0 maps to slab 0, which never holds blocks (capacity 0), so a
   * pointer into a page without a slab is rejected by the block check. */
  memset(&seg->slabs[0], 0, sizeof seg->slabs[0]);
  for (size_t i = 0; i < GPA_PAGES_PER_SEGMENT; i++) seg->page_slab[i] = &seg->slabs[0];
}

/* A free segment for `owner`: from the instance's cache, else the kernel. */
gpa_segment_t *segment_small_acquire(gpa_instance_t *inst, gpa_heap_t *owner) {
  gpa_segment_t *seg = NULL;
  instance_lock(inst);
  if (inst->segment_cache != NULL) {
    seg = inst->segment_cache;
    inst->segment_cache = seg->next;
    inst->segment_cache_count--;
  }
  instance_unlock(inst);
  if (seg != NULL) {
    segment_init_small(seg, inst, owner); /* cached segments are purged */
    return seg;
  }
  seg = os_reserve_aligned(GPA_SEGMENT_SIZE, GPA_SEGMENT_SIZE);
  if (seg == NULL) return NULL;
  segment_init_small(seg, inst, owner);
  atomic_fetch_add_explicit(&inst->small_mapped, GPA_SEGMENT_SIZE, memory_order_relaxed);
  segmap_insert(seg);
  return seg;
}

/* A segment with no live slab leaves its heap: cached, or unmapped. */
void segment_small_release(gpa_segment_t *seg) {
  GPA_INVARIANT("released-segment-is-empty", seg->used_pages == 0 && seg->free_pages == ALL_SLAB_PAGES);
  gpa_instance_t *inst = seg->instance;
  /* Purge before publishing: once cached, another heap may take it. */
  segment_purge(seg);
  seg->owner = NULL;
  instance_lock(inst);
  if (inst->segment_cache_count < GPA_SEGMENT_CACHE_MAX) {
    seg->next = inst->segment_cache;
    inst->segment_cache = seg;
    inst->segment_cache_count++;
    instance_unlock(inst);
    return;
  }
  instance_unlock(inst);
  segmap_remove(seg);
  atomic_fetch_sub_explicit(&inst->small_mapped, GPA_SEGMENT_SIZE, memory_order_relaxed);
  os_release(seg, GPA_SEGMENT_SIZE);
}

/* Bits first..first+count-1 of a page bitmap. */
static uint64_t page_run_mask(unsigned first, unsigned count) {
  return (count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1)) << first;
}

/* Lowest run of `pages` free pages, or -1. */
static int find_free_run(uint64_t free_pages, unsigned pages) {
  uint64_t run = free_pages;
  /* Afterwards bit i is set iff pages i..i+pages-1 are all free (bits shifted
   * in from above page 63 are zero, so runs cannot wrap). */
  for (unsigned k = 1; k < pages && run != 0; k++) run &= free_pages >> k;
  return run ? __builtin_ctzll(run) : -1;
}

gpa_slab_t *segment_slab_alloc(gpa_segment_t *seg, unsigned cls) {
  unsigned pages = size_class_slab_pages(cls);
  /* Prefer pages still resident from an earlier slab: no page faults, and
   * fewer dirty pages left to purge. */
  int first = find_free_run(seg->dirty_pages, pages);
  if (first < 0) first = find_free_run(seg->free_pages, pages);
  if (first < 0) return NULL;
  uint64_t mask = page_run_mask((unsigned)first, pages);
  seg->free_pages &= ~mask;
  seg->dirty_pages &= ~mask;
  seg->aged_pages &= ~mask;
  seg->used_pages += pages;
  gpa_slab_t *s = &seg->slabs[first];
  for (unsigned i = 0; i < pages; i++) seg->page_slab[first + i] = s;
  atomic_fetch_add_explicit(&seg->instance->slab_bytes, (size_t)pages * GPA_PAGE_SIZE, memory_order_relaxed);
  slab_init(s, (uint8_t *)seg + (size_t)first * GPA_PAGE_SIZE, cls, pages);
  return s;
}

static void segment_purge_pages(gpa_segment_t *seg, uint64_t which);

/* An empty slab gives its pages back to the segment, dirty: they go back to
 * the kernel when they age out (segment_age_dirty). */
void segment_slab_free(gpa_segment_t *seg, gpa_slab_t *s) {
  GPA_INVARIANT("freed-slab-is-empty", s->used == 0);
  unsigned first = (unsigned)(s - seg->slabs);
  unsigned pages = s->page_count;
  GPA_INVARIANT("slab-pages-mapped-to-slab", seg->page_slab[first] == s && seg->page_slab[first + pages - 1] == s);
  GPA_INVARIANT("slab-pages-in-use", (seg->free_pages >> first & 1) == 0);
  uint64_t mask = page_run_mask((unsigned)first, pages);
  for (unsigned i = 0; i < pages; i++) seg->page_slab[first + i] = &seg->slabs[0];
  s->in_use = 0;
  s->capacity = 0;
  atomic_store_explicit(&s->carved_bytes, 0, memory_order_relaxed);
  s->free_index = GPA_LIST_END;
  seg->free_pages |= mask;
  seg->dirty_pages |= mask;
  seg->used_pages -= pages;
  atomic_fetch_sub_explicit(&seg->instance->slab_bytes, (size_t)pages * GPA_PAGE_SIZE, memory_order_relaxed);
}

/* One generation of dirty-page aging: pages that were dirty at the previous
 * call and have not been reused since go back to the kernel; the rest age.
 * A page a program keeps cycling through is reused before it ages out; one
 * it has stopped needing is returned after one more generation. */
void segment_age_dirty(gpa_segment_t *seg) {
  segment_purge_pages(seg, seg->aged_pages & seg->dirty_pages);
  seg->aged_pages = seg->dirty_pages;
}

/* Hand every dirty free page back to the kernel. */
void segment_purge(gpa_segment_t *seg) {
  segment_purge_pages(seg, seg->dirty_pages);
}

/* Purge the pages of `which` (free, dirty), one madvise per run. */
static void segment_purge_pages(gpa_segment_t *seg, uint64_t which) {
  seg->dirty_pages &= ~which;
  seg->aged_pages &= ~which;
  uint64_t dirty = which;
  while (dirty != 0) {
    unsigned start = (unsigned)__builtin_ctzll(dirty);
    uint64_t from_start = dirty >> start;
    unsigned len = (~from_start == 0) ? 64 - start : (unsigned)__builtin_ctzll(~from_start);
    os_purge((uint8_t *)seg + (size_t)start * GPA_PAGE_SIZE, (size_t)len * GPA_PAGE_SIZE);
    dirty &= ~page_run_mask(start, len);
  }
}

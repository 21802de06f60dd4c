/*
 * slab.c: one slab's blocks: carving, the owner's free list, and the list of
 * blocks other threads gave back.
 */
#include "internal.h"
#include "os.h"
#include "size_class.h"

void slab_init(gpa_slab_t *s, uint8_t *start, unsigned cls, unsigned pages) {
  size_t block_size = size_class_block_size(cls);
  s->free_index = GPA_LIST_END;
  s->used = 0;
  s->capacity = 0;
  s->reserved = (uint32_t)(((size_t)pages * GPA_PAGE_SIZE) / block_size);
  s->block_size = (uint32_t)block_size;
  atomic_store_explicit(&s->carved_bytes, 0, memory_order_relaxed);
  s->divides = UINT64_MAX / block_size + 1;
  /* A fresh random key for every slab, so what a program learns of one
   * slab's key (it sits in every free block) says nothing of another's. */
  s->key = heap_random_word(segment_of(start)->owner);
  s->start = start;
  s->class_index = (uint8_t)cls;
  s->page_count = (uint8_t)pages;
  s->in_full = 0;
  s->in_use = 1;
  atomic_store_explicit(&s->thread_free, 0, memory_order_relaxed);
  s->next = s->prev = NULL;
}

/* ---- links a program may have overwritten ----------------------------------
 * Every link is checked before it is followed: one that names no carved
 * block of the slab, or a list longer than the slab's blocks (a cycle), is
 * reported.  `op` is the call that found it. */

static GPA_COLD __attribute__((noreturn)) void slab_report_bad_link(const char *op, const gpa_slab_t *s,
                                                                    uintptr_t target) {
  report_corrupt_free_list(op, s->start, s->block_size, target);
}

/* The address a link by index names, for the report (any index). */
static uintptr_t index_address(const gpa_slab_t *s, uint32_t index) {
  return (uintptr_t)s->start + (uintptr_t)index * s->block_size;
}

/* The block an owner's-list link names, or NULL at the list's end. */
static gpa_block_t *owner_link_target(const char *op, const gpa_slab_t *s, uint32_t index) {
  if (index == GPA_LIST_END) return NULL;
  if (index >= s->capacity) slab_report_bad_link(op, s, index_address(s, index));
  return slab_block_at(s, index);
}

/* The block a remote-list link names (an address), with its index, or NULL
 * at the list's end. */
static gpa_block_t *remote_link_target(const char *op, const gpa_slab_t *s, uintptr_t address, uint32_t *index) {
  if (address == 0) return NULL;
  if (!slab_block_index(s, (const void *)address, index)) slab_report_bad_link(op, s, address);
  return (gpa_block_t *)address;
}

static uintptr_t remote_list_head(const gpa_slab_t *s) {
  return atomic_load_explicit(&s->thread_free, memory_order_acquire) & ~SLAB_FULL_FLAG;
}

void slab_report_list_head(const gpa_slab_t *s) {
  slab_report_bad_link("malloc", s, index_address(s, s->free_index));
}

/* Carve the next run of never-used blocks onto the (empty) free list. */
void slab_extend(gpa_slab_t *s) {
  GPA_INVARIANT("extend-only-when-empty", s->free_index == GPA_LIST_END);
  size_t per_extend = GPA_EXTEND_BYTES / s->block_size;
  if (per_extend == 0) per_extend = 1;
  size_t left = s->reserved - s->capacity;
  uint32_t n = (uint32_t)(per_extend < left ? per_extend : left);
  if (n == 0) return;
  uint32_t first = s->capacity;
  s->capacity += n;
  /* Pushed last to first, so the list runs in address order. */
  uint8_t *b = (uint8_t *)slab_block_at(s, first + n - 1);
  for (uint32_t i = first + n; i-- > first; b -= s->block_size) slab_push_block(s, (gpa_block_t *)b, i);
  atomic_store_explicit(&s->carved_bytes, s->capacity * s->block_size, memory_order_relaxed);
}

/* Move the blocks other threads freed onto the owner's free list, checking
 * each link (the list lies in freed memory).  Returns true if any arrived. */
bool slab_collect(gpa_slab_t *s) {
  if (remote_list_head(s) == 0) return false;
  uintptr_t head = atomic_exchange_explicit(&s->thread_free, 0, memory_order_acquire) & ~SLAB_FULL_FLAG;
  uint32_t count = 0, index;
  for (gpa_block_t *b = remote_link_target("malloc", s, head, &index), *next; b != NULL; b = next) {
    /* Blocks handed out bound the list: more is a cycle. */
    if (++count > s->used) slab_report_bad_link("malloc", s, (uintptr_t)b);
    uint32_t this_index = index;
    next = remote_link_target("malloc", s, b->next_encoded ^ s->key, &index);
    slab_push_block(s, b, this_index);
  }
  s->used -= count;
  return count > 0;
}

/* Whether `b` is on the owner's free list or the remote list; exact, and
 * linear in the slab's free blocks: only used once a block looks free. */
bool slab_find_free_block(gpa_slab_t *s, const gpa_block_t *b) {
  uint32_t steps = 0, index;
  for (gpa_block_t *f = owner_link_target("free", s, s->free_index); f != NULL;
       f = owner_link_target("free", s, (uint32_t)(f->next_encoded ^ s->key))) {
    if (f == b) return true;
    if (++steps > s->capacity) slab_report_bad_link("free", s, (uintptr_t)f);
  }
  steps = 0;
  for (gpa_block_t *r = remote_link_target("free", s, remote_list_head(s), &index); r != NULL;
       r = remote_link_target("free", s, r->next_encoded ^ s->key, &index)) {
    if (r == b) return true;
    if (++steps > s->capacity) slab_report_bad_link("free", s, (uintptr_t)r);
  }
  return false;
}

/* Blocks still live: those handed out less the remote frees waiting to be
 * collected (the walk is bounded by `used`, which counts them). */
uint32_t slab_live_blocks(const gpa_slab_t *s) {
  uint32_t pending = 0, index;
  uint32_t used = slab_used_blocks(s);
  for (gpa_block_t *r = remote_link_target("malloc", s, remote_list_head(s), &index); r != NULL && pending < used;
       r = remote_link_target("malloc", s, r->next_encoded ^ s->key, &index))
    pending++;
  return used - pending;
}

/* A free from a thread that does not own the slab: a lock-free push.  The
 * push clears SLAB_FULL_FLAG; returns true when it did, and the caller must
 * then tell the owning heap, whose full list holds the slab.  After the push
 * the slab may be reclaimed at any moment, so nothing here reads it again. */
bool slab_push_remote(gpa_slab_t *s, gpa_block_t *b) {
  uintptr_t key = s->key;
  b->free_mark = key;
  uintptr_t head = atomic_load_explicit(&s->thread_free, memory_order_relaxed);
  do {
    b->next_encoded = ((head & ~SLAB_FULL_FLAG)) ^ key;
  } while (!atomic_compare_exchange_weak_explicit(&s->thread_free, &head, (uintptr_t)b,
                                                  memory_order_release, memory_order_relaxed));
  return (head & SLAB_FULL_FLAG) != 0;
}

/* The owner parks a slab with no free block: succeeds only while no remote
 * free is pending, so every later remote free sees the flag. */
bool slab_try_mark_full(gpa_slab_t *s) {
  uintptr_t expected = 0;
  return atomic_compare_exchange_strong_explicit(&s->thread_free, &expected, SLAB_FULL_FLAG,
                                                 memory_order_acq_rel, memory_order_relaxed);
}

/* Checked builds: the owner's free list stays inside the slab and, with the
 * live blocks, accounts for every carved block. */
void slab_check(const gpa_slab_t *s) {
#if GPA_CHECKS_ENABLED
  uint32_t free_count = 0;
  for (gpa_block_t *f = owner_link_target("malloc", s, s->free_index); f != NULL;
       f = owner_link_target("malloc", s, (uint32_t)(f->next_encoded ^ s->key)))
    GPA_INVARIANT("free-list-not-cyclic", ++free_count <= s->capacity);
  GPA_INVARIANT("slab-accounting", free_count + slab_used_blocks(s) == s->capacity);
  GPA_INVARIANT("capacity-within-reserved", s->capacity <= s->reserved);
#else
  (void)s;
#endif
}

/*
 * slab.c: one slab's blocks: carving, the owner's free list, and the list of
 * blocks other threads gave back.
 */
#include "internal.h"
#include "os.h"
#include "size_class.h"

static uintptr_t process_key;

void slab_init(gpa_slab_t *s, uint8_t *start, unsigned cls, unsigned pages) {
  if (process_key == 0) process_key = os_random_word();
  size_t block_size = size_class_block_size(cls);
  s->free = NULL;
  s->used = 0;
  s->capacity = 0;
  s->reserved = (uint32_t)(((size_t)pages * GPA_PAGE_SIZE) / block_size);
  s->block_size = (uint32_t)block_size;
  s->carved_bytes = 0;
  s->divides = UINT64_MAX / block_size + 1;
  /* A per-slab key: a pointer's encoding differs from slab to slab. */
  s->key = ((uintptr_t)start * 0x9E3779B97F4A7C15ull) ^ process_key;
  s->start = start;
  s->class_index = (uint8_t)cls;
  s->page_count = (uint8_t)pages;
  s->in_full = 0;
  s->in_use = 1;
  atomic_store_explicit(&s->thread_free, 0, memory_order_relaxed);
  s->next = s->prev = NULL;
}

/* Carve the next run of never-used blocks onto the (empty) free list. */
void slab_extend(gpa_slab_t *s) {
  GPA_INVARIANT("extend-only-when-empty", s->free == NULL);
  size_t per_extend = GPA_EXTEND_BYTES / s->block_size;
  if (per_extend == 0) per_extend = 1;
  size_t left = s->reserved - s->capacity;
  size_t n = per_extend < left ? per_extend : left;
  if (n == 0) return;
  uint8_t *first = s->start + (size_t)s->capacity * s->block_size;
  uint8_t *b = first;
  for (size_t i = 1; i < n; i++) {
    uint8_t *next = b + s->block_size;
    block_push(s, (gpa_block_t *)b, (gpa_block_t *)next);
    b = next;
  }
  block_push(s, (gpa_block_t *)b, NULL);
  s->free = (gpa_block_t *)first;
  s->capacity += (uint32_t)n;
  s->carved_bytes = s->capacity * s->block_size;
}

/* Move the blocks other threads freed onto the owner's free list.
 * Returns true if any arrived. */
bool slab_collect(gpa_slab_t *s) {
  if ((atomic_load_explicit(&s->thread_free, memory_order_relaxed) & ~SLAB_FULL_FLAG) == 0) return false;
  uintptr_t head = atomic_exchange_explicit(&s->thread_free, 0, memory_order_acquire) & ~SLAB_FULL_FLAG;
  if (head == 0) return false;
  gpa_block_t *first = (gpa_block_t *)head;
  gpa_block_t *last = first;
  uint32_t count = 1;
  for (gpa_block_t *next; (next = block_decode(s, last->next_encoded)) != NULL; last = next) {
    GPA_INVARIANT("remote-block-in-slab", slab_is_block_start(s, next));
    count++;
  }
  last->next_encoded = block_encode(s, s->free);
  s->free = first;
  GPA_INVARIANT("collect-within-used", count <= s->used);
  s->used -= count;
  return true;
}

/* Whether `b` is on the owner's free list or the remote list; exact, and
 * linear in the slab's free blocks: only used once a block looks free. */
bool slab_find_free_block(gpa_slab_t *s, const gpa_block_t *b) {
  for (gpa_block_t *f = s->free; f != NULL; f = block_decode(s, f->next_encoded))
    if (f == b) return true;
  gpa_block_t *r = (gpa_block_t *)(atomic_load_explicit(&s->thread_free, memory_order_acquire) & ~SLAB_FULL_FLAG);
  for (; r != NULL; r = block_decode(s, r->next_encoded))
    if (r == b) return true;
  return false;
}

/* Blocks still live: those handed out less the remote frees waiting to be
 * collected (the walk is bounded by `used`, which counts them). */
uint32_t slab_live_blocks(const gpa_slab_t *s) {
  uint32_t pending = 0;
  gpa_block_t *r = (gpa_block_t *)(atomic_load_explicit(&s->thread_free, memory_order_acquire) & ~SLAB_FULL_FLAG);
  uint32_t used = slab_used_blocks(s);
  for (; r != NULL && pending < used; r = block_decode(s, r->next_encoded)) pending++;
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
  for (gpa_block_t *f = s->free; f != NULL; f = block_decode(s, f->next_encoded)) {
    GPA_INVARIANT("free-list-block-in-slab", slab_is_block_start(s, f));
    GPA_INVARIANT("free-list-not-cyclic", ++free_count <= s->capacity);
  }
  GPA_INVARIANT("slab-accounting", free_count + slab_used_blocks(s) == s->capacity);
  GPA_INVARIANT("capacity-within-reserved", s->capacity <= s->reserved);
#else
  (void)s;
#endif
}

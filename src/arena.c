/*
 * arena.c: gpa_arena_t, bump allocation in chunks taken from a backing
 * allocator.  Owns the chunk list, the growth policy and the reset modes;
 * the blocks it hands out carry no header and are never freed one by one
 * (except the most recent, whose bytes go back to the cursor).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"

/* At the start of every chunk.  `size` is the whole chunk, this header
 * included, exactly as it was asked of the backing allocator, so it is also
 * what the chunk is freed with. */
struct gpa_arena_chunk {
  gpa_arena_chunk_t *next; /* the next older chunk */
  size_t size;
};

/* Chunks are asked for with malloc's alignment (and freed with it, since a
 * sized free must repeat it); blocks start after the header, rounded up to
 * what each allocation asks for. */
#define CHUNK_ALIGNMENT _Alignof(max_align_t)
#define CHUNK_HEADER_SIZE sizeof(struct gpa_arena_chunk)

/* The first chunk, header included, is one page: small enough for an arena
 * that holds a few objects, and a size that size-class allocators serve
 * without rounding it up. */
#define FIRST_CHUNK_SIZE ((size_t)4096)

/* Each new chunk is at least 1.5 times the capacity already held (the
 * factor Zig's ArenaAllocator applies to its chunks): the number of chunks,
 * and of calls to the backing allocator, stays logarithmic in the total,
 * while a fresh chunk is at most 3/5 of what the arena then holds (doubling
 * would make it 2/3), which bounds the memory an arena that stops growing
 * has taken and never uses. */
#define GROWTH_NUMERATOR 3
#define GROWTH_DENOMINATOR 2

static uintptr_t align_up(uintptr_t x, size_t alignment) {
  return (x + (alignment - 1)) & ~(uintptr_t)(alignment - 1);
}

static uintptr_t chunk_data_start(gpa_arena_chunk_t *chunk) {
  return (uintptr_t)chunk + CHUNK_HEADER_SIZE;
}

static size_t capacity_of(const gpa_arena_t *arena) {
  size_t total = 0;
  for (const gpa_arena_chunk_t *c = arena->chunks; c != NULL; c = c->next) total += c->size;
  return total;
}

/* `capacity * 3 / 2`, saturating instead of wrapping. */
static size_t grown_capacity(size_t capacity) {
  size_t extra = capacity / GROWTH_DENOMINATOR * (GROWTH_NUMERATOR - GROWTH_DENOMINATOR);
  size_t grown;
  if (__builtin_add_overflow(capacity, extra, &grown)) return SIZE_MAX;
  return grown;
}

static void free_chunk(gpa_arena_t *arena, gpa_arena_chunk_t *chunk, void *ret_addr) {
  arena->backing.vtable->free(arena->backing.ctx, chunk, chunk->size, CHUNK_ALIGNMENT, ret_addr);
}

static void free_chunks(gpa_arena_t *arena, gpa_arena_chunk_t *chunk, void *ret_addr) {
  while (chunk != NULL) {
    gpa_arena_chunk_t *older = chunk->next;
    free_chunk(arena, chunk, ret_addr);
    chunk = older;
  }
}

/* Make `chunk` (or nothing) the arena's only chunk, with nothing allocated. */
static void install_only_chunk(gpa_arena_t *arena, gpa_arena_chunk_t *chunk) {
  arena->chunks = chunk;
  if (chunk == NULL) {
    arena->cursor = 0;
    arena->end = 0;
    return;
  }
  chunk->next = NULL;
  arena->cursor = chunk_data_start(chunk);
  arena->end = (uintptr_t)chunk + chunk->size;
}

static gpa_arena_chunk_t *take_chunk(gpa_arena_t *arena, size_t size, void *ret_addr) {
  gpa_arena_chunk_t *chunk =
      arena->backing.vtable->alloc(arena->backing.ctx, size, CHUNK_ALIGNMENT, ret_addr);
  if (chunk != NULL) chunk->size = size;
  return chunk;
}

/* A new newest chunk with room for `len` bytes at `alignment`; false when
 * the backing allocator has no memory for it. */
static bool add_chunk(gpa_arena_t *arena, size_t len, size_t alignment, void *ret_addr) {
  /* Worst case: the header, then padding up to the alignment, then len. */
  size_t needed;
  if (__builtin_add_overflow(CHUNK_HEADER_SIZE + (alignment - 1), len, &needed)) return false;
  size_t grown = grown_capacity(capacity_of(arena));
  size_t preferred = grown > FIRST_CHUNK_SIZE ? grown : FIRST_CHUNK_SIZE;
  size_t size = needed > preferred ? needed : preferred;

  gpa_arena_chunk_t *chunk = take_chunk(arena, size, ret_addr);
  /* Growth is a preference, not a need: a large arena near the memory limit
   * can still serve a request that fits. */
  if (chunk == NULL && size > needed) chunk = take_chunk(arena, needed, ret_addr);
  if (chunk == NULL) return false;

  chunk->next = arena->chunks;
  arena->chunks = chunk;
  arena->cursor = chunk_data_start(chunk);
  arena->end = (uintptr_t)chunk + size;
  return true;
}

/* Where a block of `len` bytes at `alignment` would start in the newest
 * chunk, or 0 when it does not fit there. */
static uintptr_t fit_in_newest(const gpa_arena_t *arena, size_t len, size_t alignment) {
  if (arena->chunks == NULL) return 0;
  uintptr_t start = align_up(arena->cursor, alignment);
  if (start < arena->cursor || start > arena->end || arena->end - start < len) return 0;
  return start;
}

/* A new chunk, then the block from it: the slow path, kept out of line so
 * the bump below stays a handful of instructions. */
static GPA_NOINLINE void *arena_alloc_slow(gpa_arena_t *arena, size_t len, size_t alignment, void *ret_addr) {
  if (!add_chunk(arena, len, alignment, ret_addr)) return NULL;
  uintptr_t start = fit_in_newest(arena, len, alignment);
  arena->cursor = start + len;
  return (void *)start;
}

static void *arena_alloc(void *ctx, size_t len, size_t alignment, void *ret_addr) {
  gpa_arena_t *arena = ctx;
  len += len == 0; /* distinct, non-NULL blocks even for 0 bytes */
  void *p = gpa_arena_bump_(arena, len, alignment);
  return GPA_LIKELY(p != NULL) ? p : arena_alloc_slow(arena, len, alignment, ret_addr);
}

/* The most recent allocation is the one that ends at the cursor: sized
 * frees and resizes say where a block ends, so the arena needs no record of
 * it (and blocks freed in reverse order all come back).  Zero-byte blocks
 * were served as one byte. */
static bool is_most_recent(const gpa_arena_t *arena, uintptr_t block, size_t len) {
  return block != 0 && block + (len != 0 ? len : 1) == arena->cursor;
}

static bool arena_resize(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                         void *ret_addr) {
  (void)alignment;
  (void)ret_addr;
  gpa_arena_t *arena = ctx;
  uintptr_t block = (uintptr_t)ptr;
  if (!is_most_recent(arena, block, old_len)) return new_len <= old_len; /* nothing to give back */
  if (new_len == 0) new_len = 1;
  if (new_len > arena->end - block) return false;
  arena->cursor = block + new_len;
  return true;
}

static void *arena_remap(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                         void *ret_addr) {
  return arena_resize(ctx, ptr, old_len, alignment, new_len, ret_addr) ? ptr : NULL;
}

static void arena_free(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr) {
  (void)alignment;
  (void)ret_addr;
  gpa_arena_t *arena = ctx;
  if (is_most_recent(arena, (uintptr_t)ptr, len)) arena->cursor = (uintptr_t)ptr;
}

GPA_EXPORT const gpa_allocator_vtable_t gpa_arena_vtable = {
    .alloc = arena_alloc,
    .resize = arena_resize,
    .remap = arena_remap,
    .free = arena_free,
};

GPA_EXPORT void gpa_arena_init(gpa_arena_t *arena, gpa_allocator_t backing) {
  *arena = (gpa_arena_t){.backing = backing};
}

GPA_EXPORT __attribute__((noinline)) void gpa_arena_deinit(gpa_arena_t *arena) {
  free_chunks(arena, arena->chunks, __builtin_return_address(0));
  install_only_chunk(arena, NULL);
}

GPA_EXPORT gpa_allocator_t gpa_arena_allocator(gpa_arena_t *arena) {
  return (gpa_allocator_t){.ctx = arena, .vtable = &gpa_arena_vtable};
}

GPA_EXPORT size_t gpa_arena_capacity(const gpa_arena_t *arena) { return capacity_of(arena); }

/* Keep `target` bytes of chunk memory in a single chunk.  The newest chunk
 * is the largest, so it is the one kept: grown or shrunk in place if the
 * backing allocator can, otherwise swapped for a fresh chunk. */
static bool reset_retaining(gpa_arena_t *arena, size_t target, void *ret_addr) {
  gpa_arena_chunk_t *keep = arena->chunks;
  free_chunks(arena, keep->next, ret_addr);
  keep->next = NULL;
  if (keep->size == target) {
    install_only_chunk(arena, keep);
    return true;
  }
  const gpa_allocator_vtable_t *backing = arena->backing.vtable;
  if (backing->resize(arena->backing.ctx, keep, keep->size, CHUNK_ALIGNMENT, target, ret_addr)) {
    keep->size = target;
    install_only_chunk(arena, keep);
    return true;
  }
  gpa_arena_chunk_t *fresh = take_chunk(arena, target, ret_addr);
  if (fresh != NULL) {
    free_chunk(arena, keep, ret_addr);
    install_only_chunk(arena, fresh);
    return true;
  }
  /* Still usable: keep what we have, unless it breaks the limit. */
  if (keep->size > target) {
    free_chunk(arena, keep, ret_addr);
    keep = NULL;
  }
  install_only_chunk(arena, keep);
  return false;
}

GPA_EXPORT __attribute__((noinline)) bool gpa_arena_reset(gpa_arena_t *arena,
                                                          gpa_arena_reset_mode_t mode,
                                                          size_t limit) {
  void *ret_addr = __builtin_return_address(0);
  size_t target = capacity_of(arena);
  if (mode == GPA_ARENA_RETAIN_WITH_LIMIT && limit < target) target = limit;
  /* A chunk no bigger than its header could hold nothing. */
  if (mode == GPA_ARENA_FREE_ALL || target <= CHUNK_HEADER_SIZE) {
    free_chunks(arena, arena->chunks, ret_addr);
    install_only_chunk(arena, NULL);
    return true;
  }
  return reset_retaining(arena, target, ret_addr);
}

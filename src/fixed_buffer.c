/*
 * fixed_buffer.c: gpa_fixed_buffer_t, bump allocation inside memory the
 * caller provides.  It never asks anyone else for memory and never aborts:
 * a request that does not fit gets NULL.  Only the most recent allocation
 * can be given back or resized in place.
 */
#include <stddef.h>
#include <stdint.h>

#include "gpa.h"
#include "internal.h"

/* The offset in the buffer where a block of `len` bytes aligned to
 * `alignment` would start, or SIZE_MAX when it does not fit.  Alignment is
 * of the address, not of the offset: the buffer itself may be unaligned. */
static size_t fit(const gpa_fixed_buffer_t *fb, size_t len, size_t alignment) {
  uintptr_t base = (uintptr_t)fb->buffer;
  uintptr_t cursor = base + fb->end_index;
  uintptr_t start = (cursor + (alignment - 1)) & ~(uintptr_t)(alignment - 1);
  if (start < cursor) return SIZE_MAX; /* wrapped past the address space */
  size_t offset = start - base;
  if (offset > fb->size || fb->size - offset < len) return SIZE_MAX;
  return offset;
}

/* fb->last is NO_LAST after init, reset, or a free of the last block (the
 * one before it is not tracked). */
#define NO_LAST SIZE_MAX

static bool is_most_recent(const gpa_fixed_buffer_t *fb, const void *ptr) {
  return fb->last != NO_LAST && (uintptr_t)ptr == (uintptr_t)fb->buffer + fb->last;
}

static void *fixed_alloc(void *ctx, size_t len, size_t alignment, void *ret_addr) {
  (void)ret_addr;
  gpa_fixed_buffer_t *fb = ctx;
  if (len == 0) len = 1; /* distinct, non-NULL blocks even for 0 bytes */
  size_t offset = fit(fb, len, alignment);
  if (offset == SIZE_MAX) return NULL;
  fb->last = offset;
  fb->end_index = offset + len;
  return fb->buffer + offset;
}

static bool fixed_resize(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                         void *ret_addr) {
  (void)alignment;
  (void)ret_addr;
  gpa_fixed_buffer_t *fb = ctx;
  if (!is_most_recent(fb, ptr)) return new_len <= old_len; /* nothing to give back */
  if (new_len == 0) new_len = 1;
  if (new_len > fb->size - fb->last) return false;
  fb->end_index = fb->last + new_len;
  return true;
}

static void *fixed_remap(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                         void *ret_addr) {
  return fixed_resize(ctx, ptr, old_len, alignment, new_len, ret_addr) ? ptr : NULL;
}

static void fixed_free(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr) {
  (void)len;
  (void)alignment;
  (void)ret_addr;
  gpa_fixed_buffer_t *fb = ctx;
  if (is_most_recent(fb, ptr)) {
    fb->end_index = fb->last;
    fb->last = NO_LAST;
  }
}

static const gpa_allocator_vtable_t FIXED_BUFFER_VTABLE = {
    .alloc = fixed_alloc,
    .resize = fixed_resize,
    .remap = fixed_remap,
    .free = fixed_free,
};

GPA_EXPORT void gpa_fixed_buffer_init(gpa_fixed_buffer_t *fb, void *buffer, size_t size) {
  *fb = (gpa_fixed_buffer_t){.buffer = buffer, .size = size, .last = NO_LAST};
}

GPA_EXPORT gpa_allocator_t gpa_fixed_buffer_allocator(gpa_fixed_buffer_t *fb) {
  return (gpa_allocator_t){.ctx = fb, .vtable = &FIXED_BUFFER_VTABLE};
}

GPA_EXPORT bool gpa_fixed_buffer_owns(const gpa_fixed_buffer_t *fb, const void *ptr) {
  uintptr_t p = (uintptr_t)ptr;
  uintptr_t base = (uintptr_t)fb->buffer;
  return p >= base && p - base < fb->end_index;
}

GPA_EXPORT void gpa_fixed_buffer_reset(gpa_fixed_buffer_t *fb) {
  fb->end_index = 0;
  fb->last = NO_LAST;
}

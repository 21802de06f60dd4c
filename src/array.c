/*
 * array.c: gpa_array_t, a growable array of fixed-size elements whose
 * storage comes from the allocator it was given.  Owns the growth policy
 * and the move of the elements when the storage cannot grow in place.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gpa.h"
#include "internal.h"

/* What an element alignment of 0 stands for, as in the raw calls. */
#define NATURAL_ALIGNMENT _Alignof(max_align_t)

/* When an append needs room, the capacity grows by half plus a few
 * elements.  1.5 (as in Zig's ArrayList and folly's FBVector) keeps appends
 * amortised O(1) while, unlike doubling, the blocks an array has given up
 * can add up to its next one, so an allocator can reuse them.  The extra
 * elements (Zig adds a similar small constant) spare a small array the
 * 1, 2, 3, 4... steps: its first block holds 8, its second 20. */
#define GROWTH_EXTRA_ELEMENTS 8

static bool is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

static size_t storage_alignment(const gpa_array_t *arr) {
  return arr->elem_align == 0 ? NATURAL_ALIGNMENT : arr->elem_align;
}

/* `capacity + capacity / 2 + GROWTH_EXTRA_ELEMENTS`, saturating. */
static size_t grown_capacity(size_t capacity) {
  size_t grown;
  if (__builtin_add_overflow(capacity, capacity / 2, &grown) ||
      __builtin_add_overflow(grown, GROWTH_EXTRA_ELEMENTS, &grown))
    return SIZE_MAX;
  return grown;
}

/* Give the array storage for exactly `new_capacity` elements (more than it
 * has), keeping its elements: in place if the allocator can, else moved.
 * 0, or ENOMEM/EINVAL with the array unchanged. */
static int set_capacity(gpa_array_t *arr, size_t new_capacity, void *ret_addr) {
  size_t alignment = storage_alignment(arr);
  if (!is_power_of_two(alignment)) return EINVAL;
  size_t new_bytes;
  if (__builtin_mul_overflow(new_capacity, arr->elem_size, &new_bytes)) return ENOMEM;
  /* Cannot overflow: the current storage was allocated with this size. */
  size_t old_bytes = arr->capacity * arr->elem_size;
  gpa_allocator_t a = arr->allocator;

  void *items = NULL;
  if (arr->items != NULL) {
    if (a.vtable->resize(a.ctx, arr->items, old_bytes, alignment, new_bytes, ret_addr))
      items = arr->items;
    else
      items = a.vtable->remap(a.ctx, arr->items, old_bytes, alignment, new_bytes, ret_addr);
  }
  if (items == NULL) {
    items = a.vtable->alloc(a.ctx, new_bytes, alignment, ret_addr);
    if (items == NULL) return ENOMEM;
    if (arr->items != NULL) {
      memcpy(items, arr->items, arr->len * arr->elem_size);
      a.vtable->free(a.ctx, arr->items, old_bytes, alignment, ret_addr);
    }
  }
  arr->items = items;
  arr->capacity = new_capacity;
  return 0;
}

/* Room for `extra` more elements, growing by the policy above. */
static int make_room(gpa_array_t *arr, size_t extra, void *ret_addr) {
  size_t needed;
  if (__builtin_add_overflow(arr->len, extra, &needed)) return ENOMEM;
  if (needed <= arr->capacity) return 0;
  size_t grown = grown_capacity(arr->capacity);
  /* Growth past what a size_t of bytes can count would fail outright; the
   * largest capacity that can be counted may still be had. */
  size_t countable = arr->elem_size == 0 ? SIZE_MAX : SIZE_MAX / arr->elem_size;
  if (grown > countable) grown = countable;
  return set_capacity(arr, grown > needed ? grown : needed, ret_addr);
}

static int append_at(gpa_array_t *arr, const void *elems, size_t n, void *ret_addr) {
  if (n == 0) return 0;
  /* The elements may come from the array itself, which growing may move:
   * remember where they sit relative to the storage. */
  uintptr_t src = (uintptr_t)elems;
  uintptr_t storage = (uintptr_t)arr->items;
  bool from_self = arr->items != NULL && src >= storage &&
                   src - storage < arr->capacity * arr->elem_size;
  int rc = make_room(arr, n, ret_addr);
  if (rc != 0) return rc;
  if (from_self) elems = (const uint8_t *)arr->items + (src - storage);
  /* Cannot overflow: make_room has allocated this many bytes. */
  memmove((uint8_t *)arr->items + arr->len * arr->elem_size, elems, n * arr->elem_size);
  arr->len += n;
  return 0;
}

GPA_EXPORT void gpa_array_init(gpa_array_t *arr, gpa_allocator_t a, size_t elem_size,
                               size_t elem_align) {
  *arr = (gpa_array_t){.elem_size = elem_size, .elem_align = elem_align, .allocator = a};
}

GPA_EXPORT __attribute__((noinline)) void gpa_array_deinit(gpa_array_t *arr) {
  if (arr->items != NULL) {
    gpa_allocator_t a = arr->allocator;
    a.vtable->free(a.ctx, arr->items, arr->capacity * arr->elem_size, storage_alignment(arr),
                   __builtin_return_address(0));
  }
  arr->items = NULL;
  arr->len = 0;
  arr->capacity = 0;
}

GPA_EXPORT __attribute__((noinline)) int gpa_array_reserve(gpa_array_t *arr, size_t capacity) {
  if (capacity <= arr->capacity) return 0;
  return set_capacity(arr, capacity, __builtin_return_address(0));
}

GPA_EXPORT __attribute__((noinline)) int gpa_array_append(gpa_array_t *arr, const void *elem) {
  return append_at(arr, elem, 1, __builtin_return_address(0));
}

GPA_EXPORT __attribute__((noinline)) int gpa_array_append_many(gpa_array_t *arr, const void *elems,
                                                               size_t n) {
  return append_at(arr, elems, n, __builtin_return_address(0));
}

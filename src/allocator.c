/*
 * allocator.c: the raw calls through a gpa_allocator_t (gpa_raw_*,
 * gpa_strdup).  They normalise arguments (alignment 0, sizes in elements),
 * set errno the way malloc does, and hand the vtable the address of the
 * user's call so reports can start there.  They know nothing about any
 * particular allocator.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "api.h"

/* What alignment 0 stands for, as in malloc: enough for any scalar type. */
#define NATURAL_ALIGNMENT _Alignof(max_align_t)

/* strdup's copies are byte arrays: gpa_free(a, copy, n) frees them with
 * alignof(char), so they must be allocated with it too. */
#define STRING_ALIGNMENT _Alignof(char)

/* Every exported call passes its own return address down, so it must be a
 * real call that is never folded into its caller. */
#define USER_CALL_SITE() __builtin_return_address(0)
#define RAW_API GPA_EXPORT __attribute__((noinline))

/* The user's stack pointer at the call (the canonical frame address of this
 * function): a general-purpose allocator's state below it lies in a frame
 * that has returned (see api.h). */
#define CALLER_FRAME() ((uintptr_t)__builtin_dwarf_cfa())
#define CHECK_STATE(a) api_check_call((a), CALLER_FRAME())

static bool is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* The alignment to hand the vtable, or 0 (errno EINVAL) when `alignment`
 * is neither 0 nor a power of two. */
static size_t checked_alignment(size_t alignment) {
  if (alignment == 0) return NATURAL_ALIGNMENT;
  if (!is_power_of_two(alignment)) {
    errno = EINVAL;
    return 0;
  }
  return alignment;
}

/* The vtable's alloc with malloc's errno rule: a failure is ENOMEM (the
 * arguments were checked before), and success leaves errno alone. */
static inline void *alloc_at(gpa_allocator_t a, size_t len, size_t alignment, void *ret_addr) {
  void *p = a.vtable->alloc(a.ctx, len, alignment, ret_addr);
  if (GPA_UNLIKELY(p == NULL)) errno = ENOMEM;
  return p;
}

static inline void *alloc_array_at(gpa_allocator_t a, size_t count, size_t size, size_t alignment,
                            void *ret_addr) {
  size_t align = checked_alignment(alignment);
  if (align == 0) return NULL;
  size_t len;
  if (__builtin_mul_overflow(count, size, &len)) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_at(a, len, align, ret_addr);
}

/* A general-purpose allocator's value is served without the indirect call:
 * the same operation, inlined, with the state checked against the user's
 * frame. */
static inline bool is_gpa(gpa_allocator_t a) { return a.vtable == &gpa_instance_vtable; }

/* The typed helpers' direct calls for a gpa_t (gpa.h): `alignment` is an
 * _Alignof, a power of two. */
RAW_API void *gpa_instance_alloc_(gpa_t *gpa, size_t len, size_t alignment) {
  return api_gpa_alloc(gpa, len, alignment, CALLER_FRAME()); /* a failure sets errno */
}

RAW_API void gpa_instance_free_(gpa_t *gpa, void *ptr, size_t len) {
  api_gpa_free(gpa, ptr, len, CALLER_FRAME());
}

RAW_API void *gpa_raw_alloc(gpa_allocator_t a, size_t len, size_t alignment) {
  if (GPA_LIKELY(is_gpa(a)) && (alignment & (alignment - 1)) == 0)
    return api_gpa_alloc(a.ctx, len, alignment, CALLER_FRAME()); /* a failure sets errno */
  if (a.vtable == &gpa_arena_vtable && len != 0 && (alignment & (alignment - 1)) == 0) {
    void *p = gpa_arena_bump_(a.ctx, len, alignment != 0 ? alignment : NATURAL_ALIGNMENT);
    if (GPA_LIKELY(p != NULL)) return p;
  }
  return alloc_array_at(a, 1, len, alignment, USER_CALL_SITE());
}

RAW_API void *gpa_raw_alloc_array(gpa_allocator_t a, size_t count, size_t size, size_t alignment) {
  size_t len;
  if (GPA_LIKELY(is_gpa(a)) && (alignment & (alignment - 1)) == 0 && !__builtin_mul_overflow(count, size, &len))
    return api_gpa_alloc(a.ctx, len, alignment, CALLER_FRAME()); /* a failure sets errno */
  if (a.vtable == &gpa_arena_vtable && (alignment & (alignment - 1)) == 0 &&
      !__builtin_mul_overflow(count, size, &len) && len != 0) {
    void *p = gpa_arena_bump_(a.ctx, len, alignment != 0 ? alignment : NATURAL_ALIGNMENT);
    if (GPA_LIKELY(p != NULL)) return p;
  }
  CHECK_STATE(a);
  return alloc_array_at(a, count, size, alignment, USER_CALL_SITE());
}

RAW_API void *gpa_raw_alloc_zeroed(gpa_allocator_t a, size_t count, size_t size, size_t alignment) {
  CHECK_STATE(a);
  void *p = alloc_array_at(a, count, size, alignment, USER_CALL_SITE());
  /* The product cannot overflow here: the allocation above checked it. */
  if (p != NULL) memset(p, 0, count * size);
  return p;
}

RAW_API bool gpa_raw_resize(gpa_allocator_t a, void *ptr, size_t old_len, size_t alignment,
                            size_t new_len) {
  CHECK_STATE(a);
  size_t align = checked_alignment(alignment);
  if (align == 0 || ptr == NULL) return false;
  return a.vtable->resize(a.ctx, ptr, old_len, align, new_len, USER_CALL_SITE());
}

/* NULL here is not an error (the implementation may judge a move not worth
 * it), so errno is left alone except for a bad alignment. */
RAW_API void *gpa_raw_remap(gpa_allocator_t a, void *ptr, size_t old_len, size_t alignment,
                            size_t new_len) {
  CHECK_STATE(a);
  size_t align = checked_alignment(alignment);
  if (align == 0 || ptr == NULL) return NULL;
  return a.vtable->remap(a.ctx, ptr, old_len, align, new_len, USER_CALL_SITE());
}

/* A block is never allocated with an alignment that is not a power of two,
 * so a free that names one cannot be describing a real block: leaking it is
 * safer than handing an implementation a length it may trust. */
RAW_API void gpa_raw_free(gpa_allocator_t a, void *ptr, size_t len, size_t alignment) {
  if (GPA_LIKELY(is_gpa(a))) { /* the alignment plays no part in its free */
    api_gpa_free(a.ctx, ptr, len, CALLER_FRAME());
    return;
  }
  CHECK_STATE(a);
  if (ptr == NULL) return;
  size_t align = checked_alignment(alignment);
  if (align == 0) return;
  a.vtable->free(a.ctx, ptr, len, align, USER_CALL_SITE());
}

/* A new_count of 0 is tested before a NULL ptr, so "resize to nothing"
 * always ends with NULL and nothing allocated, whatever the start was. */
RAW_API void *gpa_raw_realloc(gpa_allocator_t a, void *ptr, size_t old_count, size_t new_count,
                              size_t size, size_t alignment) {
  CHECK_STATE(a);
  void *ret_addr = USER_CALL_SITE();
  size_t align = checked_alignment(alignment);
  if (align == 0) return NULL;

  size_t old_len = 0;
  if (ptr != NULL && __builtin_mul_overflow(old_count, size, &old_len)) {
    errno = EINVAL; /* no block of that many bytes can exist */
    return NULL;
  }
  if (new_count == 0) {
    if (ptr != NULL) a.vtable->free(a.ctx, ptr, old_len, align, ret_addr);
    return NULL;
  }
  size_t new_len;
  if (__builtin_mul_overflow(new_count, size, &new_len)) {
    errno = ENOMEM;
    return NULL;
  }
  if (ptr == NULL) return alloc_at(a, new_len, align, ret_addr);

  if (a.vtable->resize(a.ctx, ptr, old_len, align, new_len, ret_addr)) return ptr;
  void *moved = a.vtable->remap(a.ctx, ptr, old_len, align, new_len, ret_addr);
  if (moved != NULL) return moved;

  void *fresh = alloc_at(a, new_len, align, ret_addr);
  if (fresh == NULL) return NULL; /* the old block is still the caller's */
  memcpy(fresh, ptr, old_len < new_len ? old_len : new_len);
  a.vtable->free(a.ctx, ptr, old_len, align, ret_addr);
  return fresh;
}

static void *dupe_at(gpa_allocator_t a, const void *src, size_t len, size_t alignment,
                     void *ret_addr) {
  void *copy = alloc_array_at(a, 1, len, alignment, ret_addr);
  /* memcpy's pointers must be valid even for 0 bytes, and src may be NULL. */
  if (copy != NULL && len != 0) memcpy(copy, src, len);
  return copy;
}

RAW_API void *gpa_raw_dupe(gpa_allocator_t a, const void *src, size_t len, size_t alignment) {
  CHECK_STATE(a);
  return dupe_at(a, src, len, alignment, USER_CALL_SITE());
}

RAW_API char *gpa_strdup(gpa_allocator_t a, const char *s) {
  CHECK_STATE(a);
  return dupe_at(a, s, strlen(s) + 1, STRING_ALIGNMENT, USER_CALL_SITE());
}

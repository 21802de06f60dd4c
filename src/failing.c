/*
 * failing.c: gpa_failing_t, a pass-through allocator for testing
 * out-of-memory paths.  It counts every call, fails the allocations from
 * `fail_index` on and the resize numbered `resize_fail_index`, and keeps
 * byte totals so a test can check that everything handed out came back.
 */
#include <errno.h>
#include <stddef.h>

#include "gpa.h"
#include "internal.h"

static void *failing_alloc(void *ctx, size_t len, size_t alignment, void *ret_addr) {
  gpa_failing_t *f = ctx;
  size_t index = f->alloc_index++;
  if (index >= f->fail_index) {
    f->has_induced_failure = true;
    errno = ENOMEM;
    return NULL;
  }
  void *p = f->backing.vtable->alloc(f->backing.ctx, len, alignment, ret_addr);
  if (p != NULL) {
    f->allocations++;
    f->allocated_bytes += len;
  }
  return p;
}

/* A length change counts into the byte totals the way an allocation or a
 * free of the difference would, so they still balance at the end. */
static void count_length_change(gpa_failing_t *f, size_t old_len, size_t new_len) {
  if (new_len > old_len)
    f->allocated_bytes += new_len - old_len;
  else
    f->freed_bytes += old_len - new_len;
}

/* True when this resize attempt is the one chosen to fail. */
static bool induce_resize_failure(gpa_failing_t *f) {
  size_t index = f->resize_index++;
  if (index != f->resize_fail_index) return false;
  f->has_induced_failure = true;
  return true;
}

static bool failing_resize(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                           void *ret_addr) {
  gpa_failing_t *f = ctx;
  if (induce_resize_failure(f)) return false;
  if (!f->backing.vtable->resize(f->backing.ctx, ptr, old_len, alignment, new_len, ret_addr))
    return false;
  count_length_change(f, old_len, new_len);
  return true;
}

/* A remap is a resize that may move the block: it counts as a resize
 * attempt, so resize_fail_index can make it fail too. */
static void *failing_remap(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                           void *ret_addr) {
  gpa_failing_t *f = ctx;
  if (induce_resize_failure(f)) return NULL;
  void *moved =
      f->backing.vtable->remap(f->backing.ctx, ptr, old_len, alignment, new_len, ret_addr);
  if (moved != NULL) count_length_change(f, old_len, new_len);
  return moved;
}

static void failing_free(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr) {
  gpa_failing_t *f = ctx;
  f->deallocations++;
  f->freed_bytes += len;
  f->backing.vtable->free(f->backing.ctx, ptr, len, alignment, ret_addr);
}

static const gpa_allocator_vtable_t FAILING_VTABLE = {
    .alloc = failing_alloc,
    .resize = failing_resize,
    .remap = failing_remap,
    .free = failing_free,
};

GPA_EXPORT void gpa_failing_init(gpa_failing_t *f, gpa_allocator_t backing, size_t fail_index,
                                 size_t resize_fail_index) {
  *f = (gpa_failing_t){
      .backing = backing,
      .fail_index = fail_index,
      .resize_fail_index = resize_fail_index,
  };
}

GPA_EXPORT gpa_allocator_t gpa_failing_allocator(gpa_failing_t *f) {
  return (gpa_allocator_t){.ctx = f, .vtable = &FAILING_VTABLE};
}

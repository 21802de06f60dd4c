/*
 * libc_allocator.c: gpa_libc_allocator(), the process's malloc family
 * behind the allocator interface.  Stateless: the context is NULL and every
 * call goes straight to malloc, posix_memalign, realloc or free.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#include "gpa.h"
#include "internal.h"

/* What malloc and realloc guarantee without being asked. */
#define NATURAL_ALIGNMENT _Alignof(max_align_t)

static void *libc_alloc(void *ctx, size_t len, size_t alignment, void *ret_addr) {
  (void)ctx;
  (void)ret_addr;
  if (len == 0) len = 1; /* malloc(0) may return NULL; the interface may not */
  if (alignment <= NATURAL_ALIGNMENT) return malloc(len);
  /* posix_memalign takes any power-of-two multiple of sizeof(void *), which
   * every alignment above the natural one is, and no size rounding. */
  void *p = NULL;
  int rc = posix_memalign(&p, alignment, len);
  if (rc != 0) {
    errno = rc;
    return NULL;
  }
  return p;
}

/* malloc cannot grow a block in place on request, but the block may
 * already be bigger than was asked for. */
static bool libc_resize(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                        void *ret_addr) {
  (void)ctx;
  (void)old_len;
  (void)alignment;
  (void)ret_addr;
  return new_len <= malloc_usable_size(ptr);
}

/* realloc only promises the natural alignment, so an over-aligned block is
 * left for the caller to move by hand. */
static void *libc_remap(void *ctx, void *ptr, size_t old_len, size_t alignment, size_t new_len,
                        void *ret_addr) {
  (void)ctx;
  (void)old_len;
  (void)ret_addr;
  if (alignment > NATURAL_ALIGNMENT) return NULL;
  return realloc(ptr, new_len == 0 ? 1 : new_len);
}

static void libc_free(void *ctx, void *ptr, size_t len, size_t alignment, void *ret_addr) {
  (void)ctx;
  (void)len;
  (void)alignment;
  (void)ret_addr;
  free(ptr);
}

static const gpa_allocator_vtable_t LIBC_VTABLE = {
    .alloc = libc_alloc,
    .resize = libc_resize,
    .remap = libc_remap,
    .free = libc_free,
};

GPA_EXPORT gpa_allocator_t gpa_libc_allocator(void) {
  return (gpa_allocator_t){.ctx = NULL, .vtable = &LIBC_VTABLE};
}

/*
 * gpa.h: the public interface of libgpa, a general-purpose memory allocator.
 *
 * Linking libgpa (or preloading libgpa.so) replaces the C library's whole
 * allocation family: malloc, free, calloc, realloc, reallocarray,
 * aligned_alloc, posix_memalign, memalign, valloc, pvalloc,
 * malloc_usable_size, malloc_trim, mallinfo2 and friends.  Those keep their
 * usual declarations in <stdlib.h> and <malloc.h>; this header adds what the
 * C library does not declare.
 *
 * Thread safety: every function here may be called from any thread.
 */
#ifndef GPA_H
#define GPA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPA_VERSION_MAJOR 0
#define GPA_VERSION_MINOR 1
#define GPA_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH"; a static string. */
const char *gpa_version(void);

/*
 * C23 sized deallocation.  `size` must be the size that was requested (any
 * size that maps to the same block is accepted); `alignment` the alignment
 * given to aligned_alloc.  NULL is ignored, like free(NULL).
 */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* GPA_H */

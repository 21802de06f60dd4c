/*
 * os.h: every call the allocator makes to the kernel.  Nothing above this
 * layer calls mmap, munmap, madvise or mremap.
 *
 * errno: a successful call leaves errno as it found it; a failed one sets
 * errno to ENOMEM (the only error the allocator reports for memory).
 */
#ifndef GPA_OS_H
#define GPA_OS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every mapping the allocator makes lies below 2^OS_ADDRESS_BITS, so maps
 * indexed by address stay small.  x86-64's user space is 47 bits wide
 * unless a program asks for higher addresses by hint (Linux's
 * Documentation/arch/x86/x86_64/5level-paging.rst); elsewhere 48. */
#if defined(__x86_64__)
#define OS_ADDRESS_BITS 47
#else
#define OS_ADDRESS_BITS 48
#endif

/* The kernel's page size (from the auxiliary vector, no libc call). */
size_t os_page_size(void);

/* Fresh zeroed read-write memory of `size` bytes (a multiple of the page
 * size), aligned to `alignment` (a power of two >= the page size), below
 * 2^OS_ADDRESS_BITS; NULL and ENOMEM on failure, including a size the
 * kernel's overcommit policy refuses to commit. */
void *os_reserve_aligned(size_t size, size_t alignment);

/* Return a reservation (or its page-aligned tail) to the kernel. */
void os_release(void *addr, size_t size);

/* Drop the contents of whole pages, keeping the range mapped: the pages stop
 * counting in RSS and read back as zero. */
void os_purge(void *addr, size_t size);

/* Grow or shrink a mapping without moving it; false if the kernel cannot. */
bool os_remap_in_place(void *addr, size_t old_size, size_t new_size);

/* Move a mapping to a new place aligned to `alignment`, growing or shrinking
 * it; the pages move as os_move_pages moves them.  NULL and ENOMEM when the
 * new place cannot be reserved, the old mapping then intact. */
void *os_remap_aligned(void *addr, size_t old_size, size_t new_size, size_t alignment);

/* Move the bytes of [from, from + size) to `to`, the start of a range of an
 * existing mapping: page-table entries move where the kernel can (no copy,
 * no page fault), bytes are copied where it cannot.  `from` is unmapped
 * afterwards.  Works on ranges made of several mappings. */
void os_move_pages(void *from, size_t size, void *to);

/* A full memory barrier on every running thread of the process, so a
 * thread that pays only a compiler barrier on its hot path still orders
 * its stores before its loads with respect to the caller (membarrier(2),
 * MEMBARRIER_CMD_PRIVATE_EXPEDITED).  os_barrier_register is called once
 * first (and again in a fork child); false when the kernel lacks the
 * command, and then os_barrier_all_threads must not be relied on. */
bool os_barrier_register(void);
bool os_barrier_all_threads(void);

/* Sleep while the 32-bit word at `addr` holds `expected` (or until a wake
 * or a signal: callers check again), and wake every such sleeper: a futex
 * private to the process. */
void os_wait_while_equal(const _Atomic(uint32_t) *addr, uint32_t expected);
void os_wake_all(const _Atomic(uint32_t) *addr);

/* Fill `buf` with secret random bytes from the kernel (getrandom(2)); where
 * the kernel has none to give yet, from the auxiliary vector's AT_RANDOM
 * bytes stirred with a counter and the clock (unpredictable, not secret). */
void os_random_fill(void *buf, size_t len);

/* Write a whole buffer to a file descriptor, retrying on EINTR. */
void os_write_all(int fd, const char *buf, size_t len);

/* Failure injection, for tests: after `successes` more successful
 * reservations, every reservation fails as if the kernel refused memory.
 * A negative value switches injection off. */
void os_fail_after(long successes);

/* For tests: a function called with every range this layer has just
 * unmapped or moved pages away from (os_release, os_move_pages), while the
 * caller still runs; NULL (the default) calls nothing.  A test can map
 * something of its own there, as another thread could. */
typedef void (*os_vacate_hook_fn)(void *addr, size_t size);
void os_set_vacate_hook(os_vacate_hook_fn hook);

/* For tests: true makes every aligned reservation skip the hint area, so
 * the kernel chooses every address (as it does once the area is full). */
void os_disable_hints(bool disable);

/* Bytes currently mapped through this layer, and bytes purged so far. */
size_t os_mapped_bytes(void);
size_t os_purged_bytes(void);

#endif /* GPA_OS_H */

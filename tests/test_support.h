/* test_support.h: small helpers shared by the test programs. */
#ifndef GPA_TEST_SUPPORT_H
#define GPA_TEST_SUPPORT_H

#include <fcntl.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

/* Resident bytes from /proc/self/statm, read without allocating. */
static inline size_t rss_bytes(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  unsigned long size_pages = 0, resident_pages = 0;
  if (sscanf(buf, "%lu %lu", &size_pages, &resident_pages) != 2) return 0;
  return (size_t)resident_pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Byte patterns that tell one block's bytes from another's.  assert_pattern
 * needs <cmocka.h>. */
/* The byte at offset i of a block filled with `seed`. */
static inline uint8_t pattern_byte(uint64_t seed, size_t i) {
  uint32_t x = (uint32_t)(i ^ (i >> 9)) * 2654435761u + (uint32_t)(seed * 0x9E3779B97F4A7C15ull >> 32);
  return (uint8_t)((x >> 24) ^ (x >> 11));
}

static inline void fill(void *p, size_t n, uint64_t seed) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++) b[i] = pattern_byte(seed, i);
}

/* Index of the first byte that differs from the pattern, or SIZE_MAX. */
static inline size_t first_mismatch(const void *p, size_t n, uint64_t seed) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != pattern_byte(seed, i)) return i;
  return SIZE_MAX;
}

#define assert_pattern(p, n, seed) assert_int_equal(first_mismatch((p), (n), (seed)), SIZE_MAX)

#endif /* GPA_TEST_SUPPORT_H */

/* test_support.h: small helpers shared by the test programs. */
#ifndef GPA_TEST_SUPPORT_H
#define GPA_TEST_SUPPORT_H

#include <fcntl.h>
#include <stdio.h>
#include <stddef.h>
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

#endif /* GPA_TEST_SUPPORT_H */

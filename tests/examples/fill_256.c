/*
 * fill_256.c: allocate 256 bytes, fill them with 1, check every one, free
 * them.
 *
 * expected stdout: "256 bytes filled with 1, sum 256"
 */
#include <gpa.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  gpa_t gpa;
  if (gpa_init(&gpa, NULL) != 0) return 1;
  gpa_allocator_t allocator = gpa_allocator(&gpa);

  unsigned char *bytes = gpa_alloc(allocator, unsigned char, 256);
  if (bytes == NULL) return 1;
  memset(bytes, 1, 256);
  unsigned sum = 0;
  for (size_t i = 0; i < 256; i++) sum += bytes[i];
  printf("256 bytes filled with 1, sum %u\n", sum);
  gpa_free(allocator, bytes, 256);

  return gpa_deinit(&gpa) == GPA_OK && sum == 256 ? 0 : 1;
}

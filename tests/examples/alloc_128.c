/*
 * alloc_128.c: allocate 128 bytes through the allocator value, say so, and
 * give them back; deinit then finds nothing live.
 *
 * expected stdout: "allocated 128 bytes"
 */
#include <gpa.h>
#include <stdio.h>

int main(void) {
  gpa_t gpa;
  if (gpa_init(&gpa, NULL) != 0) return 1;
  gpa_allocator_t allocator = gpa_allocator(&gpa);

  unsigned char *bytes = gpa_alloc(allocator, unsigned char, 128);
  if (bytes == NULL) return 1;
  printf("allocated %d bytes\n", 128);
  gpa_free(allocator, bytes, 128);

  return gpa_deinit(&gpa) == GPA_OK ? 0 : 1;
}

/*
 * point.c: create one Point through the allocator, set and print its
 * fields, destroy it.
 *
 * expected stdout: "Point { x = 3, y = -7 }"
 */
#include <gpa.h>
#include <stdio.h>

typedef struct point {
  int x;
  int y;
} point_t;

int main(void) {
  gpa_t gpa;
  if (gpa_init(&gpa, NULL) != 0) return 1;
  gpa_allocator_t allocator = gpa_allocator(&gpa);

  point_t *p = gpa_create(allocator, point_t);
  if (p == NULL) return 1;
  p->x = 3;
  p->y = -7;
  printf("Point { x = %d, y = %d }\n", p->x, p->y);
  gpa_destroy(allocator, p);

  return gpa_deinit(&gpa) == GPA_OK ? 0 : 1;
}

/*
 * hello_zig.c: the general-purpose allocator example, in C.  main chooses
 * the allocator and owns its state; run() receives only the allocator value
 * and builds a growable array of bytes with it.
 *
 * expected stdout: "hello zig"
 */
#include <gpa.h>
#include <stdio.h>

static int run(gpa_allocator_t allocator) {
  gpa_array_t list;
  gpa_array_init_typed(&list, allocator, char);
  int rc = gpa_array_append_many(&list, "hello ", 6);
  if (rc == 0) rc = gpa_array_append_many(&list, "zig", 3);
  if (rc == 0) printf("%.*s\n", (int)list.len, gpa_array_items(&list, char));
  gpa_array_deinit(&list);
  return rc;
}

int main(void) {
  gpa_t gpa;
  if (gpa_init(&gpa, NULL) != 0) return 1;
  int rc = run(gpa_allocator(&gpa));
  if (gpa_deinit(&gpa) == GPA_LEAK) {
    fprintf(stderr, "leaked %zu allocation(s)\n", gpa.leaked_blocks);
    return 1;
  }
  return rc == 0 ? 0 : 1;
}

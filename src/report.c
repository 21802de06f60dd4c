/*
 * report.c: fatal diagnostics.  One line on stderr naming the pointer, then
 * abort().  Written with write(2) from a stack buffer: a report must never
 * allocate from the heap it is reporting on.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os.h"
#include "writer.h"

/* One line, one write(2): lines from threads reporting at once stay whole. */
static __attribute__((noreturn)) void emit_and_abort(writer_t *w) {
  writer_char(w, '\n');
  writer_flush(w);
  abort();
}

void report_invalid_free(const char *op, const void *p, const char *why) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: ");
  writer_str(&l, op);
  writer_str(&l, "(): invalid pointer ");
  writer_hex(&l, (uintptr_t)p);
  writer_str(&l, ": ");
  writer_str(&l, why);
  emit_and_abort(&l);
}

void report_double_free(const char *op, const void *p, size_t block_size) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: ");
  writer_str(&l, op);
  /* A freeing call frees twice; realloc or malloc_usable_size uses a
   * freed block. */
  writer_str(&l, strstr(op, "free") != NULL ? "(): double free of " : "(): use after free of ");
  writer_hex(&l, (uintptr_t)p);
  if (block_size == 0) {
    writer_str(&l, " (no live block starts there: a large block freed already?)");
  } else {
    writer_str(&l, " (a ");
    writer_dec(&l, block_size);
    writer_str(&l, "-byte block already free)");
  }
  emit_and_abort(&l);
}

void report_corrupt_free_list(const char *op, const void *slab_start, size_t block_size, uintptr_t target) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: ");
  writer_str(&l, op);
  writer_str(&l, "(): corrupted free list in the slab of ");
  writer_dec(&l, block_size);
  writer_str(&l, "-byte blocks at ");
  writer_hex(&l, (uintptr_t)slab_start);
  writer_str(&l, ": a link names ");
  writer_hex(&l, target);
  writer_str(&l, ", not one of its blocks (freed memory was written to)");
  emit_and_abort(&l);
}

void report_allocator_state(const void *state, const char *what) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: allocator used ");
  writer_str(&l, what);
  writer_str(&l, " (state at ");
  writer_hex(&l, (uintptr_t)state);
  writer_str(&l, ")");
  emit_and_abort(&l);
}

void report_wrong_instance(const char *op, const void *p, const void *owner, const void *used) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: ");
  writer_str(&l, op);
  writer_str(&l, "(): block ");
  writer_hex(&l, (uintptr_t)p);
  writer_str(&l, " belongs to the allocator with state at ");
  writer_hex(&l, (uintptr_t)owner);
  writer_str(&l, ", not to this one (state at ");
  writer_hex(&l, (uintptr_t)used);
  writer_str(&l, ")");
  emit_and_abort(&l);
}

void report_bad_size(const char *op, const void *p, size_t given, size_t block_size) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: ");
  writer_str(&l, op);
  writer_str(&l, "(): size mismatch for ");
  writer_hex(&l, (uintptr_t)p);
  writer_str(&l, ": freed as ");
  writer_dec(&l, given);
  writer_str(&l, " byte(s), but its block holds ");
  writer_dec(&l, block_size);
  emit_and_abort(&l);
}

void report_leak_summary(const char *name, size_t blocks, size_t bytes) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: ");
  if (name != NULL) {
    writer_str(&l, name);
    writer_str(&l, ": ");
  }
  writer_str(&l, "leaked ");
  writer_dec(&l, blocks);
  writer_str(&l, " allocation(s), ");
  writer_dec(&l, bytes);
  writer_str(&l, " byte(s)\n");
  writer_flush(&l);
}

#if GPA_CHECKS_ENABLED
void check_failed(const char *name, const char *file, int line) {
  writer_t l;
  writer_init(&l, 2);
  writer_str(&l, "gpa: internal invariant '");
  writer_str(&l, name);
  writer_str(&l, "' broken at ");
  writer_str(&l, file);
  writer_str(&l, ":");
  writer_dec(&l, (size_t)line);
  emit_and_abort(&l);
}
#endif

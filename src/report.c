/*
 * report.c: fatal diagnostics.  One line on stderr naming the pointer, then
 * abort().  Written with write(2) from a stack buffer: a report must never
 * allocate from the heap it is reporting on.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os.h"

#define REPORT_LINE_MAX 256

typedef struct {
  char buf[REPORT_LINE_MAX];
  size_t len;
} line_t;

static void put_str(line_t *l, const char *s) {
  size_t n = strlen(s);
  if (n > sizeof l->buf - 1 - l->len) n = sizeof l->buf - 1 - l->len;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void put_hex(line_t *l, uintptr_t v) {
  char tmp[2 + 16];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  tmp[--i] = 'x';
  tmp[--i] = '0';
  char s[sizeof tmp + 1];
  memcpy(s, tmp + i, sizeof tmp - i);
  s[sizeof tmp - i] = '\0';
  put_str(l, s);
}

static void put_dec(line_t *l, size_t v) {
  char tmp[24];
  size_t i = sizeof tmp - 1;
  tmp[i] = '\0';
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  put_str(l, tmp + i);
}

static __attribute__((noreturn)) void emit_and_abort(line_t *l) {
  l->buf[l->len++] = '\n';
  os_write_all(2, l->buf, l->len);
  abort();
}

void report_invalid_free(const char *op, const void *p, const char *why) {
  line_t l = { .len = 0 };
  put_str(&l, "gpa: ");
  put_str(&l, op);
  put_str(&l, "(): invalid pointer ");
  put_hex(&l, (uintptr_t)p);
  put_str(&l, ": ");
  put_str(&l, why);
  emit_and_abort(&l);
}

void report_double_free(const char *op, const void *p, size_t block_size) {
  line_t l = { .len = 0 };
  put_str(&l, "gpa: ");
  put_str(&l, op);
  put_str(&l, "(): double free of ");
  put_hex(&l, (uintptr_t)p);
  put_str(&l, " (a ");
  put_dec(&l, block_size);
  put_str(&l, "-byte block already free)");
  emit_and_abort(&l);
}

void report_allocator_state(const void *state, const char *what) {
  line_t l = { .len = 0 };
  put_str(&l, "gpa: allocator used ");
  put_str(&l, what);
  put_str(&l, " (state at ");
  put_hex(&l, (uintptr_t)state);
  put_str(&l, ")");
  emit_and_abort(&l);
}

void report_wrong_instance(const char *op, const void *p, const void *owner, const void *used) {
  line_t l = { .len = 0 };
  put_str(&l, "gpa: ");
  put_str(&l, op);
  put_str(&l, "(): block ");
  put_hex(&l, (uintptr_t)p);
  put_str(&l, " belongs to the allocator with state at ");
  put_hex(&l, (uintptr_t)owner);
  put_str(&l, ", not to this one (state at ");
  put_hex(&l, (uintptr_t)used);
  put_str(&l, ")");
  emit_and_abort(&l);
}

void report_bad_size(const char *op, const void *p, size_t given, size_t block_size) {
  line_t l = { .len = 0 };
  put_str(&l, "gpa: ");
  put_str(&l, op);
  put_str(&l, "(): size mismatch for ");
  put_hex(&l, (uintptr_t)p);
  put_str(&l, ": freed as ");
  put_dec(&l, given);
  put_str(&l, " byte(s), but its block holds ");
  put_dec(&l, block_size);
  emit_and_abort(&l);
}

void report_leak_summary(const char *name, size_t blocks, size_t bytes) {
  line_t l = { .len = 0 };
  put_str(&l, "gpa: ");
  if (name != NULL) {
    put_str(&l, name);
    put_str(&l, ": ");
  }
  put_str(&l, "leaked ");
  put_dec(&l, blocks);
  put_str(&l, " allocation(s), ");
  put_dec(&l, bytes);
  put_str(&l, " byte(s)\n");
  os_write_all(2, l.buf, l.len);
}

#if GPA_CHECKS_ENABLED
void check_failed(const char *name, const char *file, int line) {
  line_t l = { .len = 0 };
  put_str(&l, "gpa: internal invariant '");
  put_str(&l, name);
  put_str(&l, "' broken at ");
  put_str(&l, file);
  put_str(&l, ":");
  put_dec(&l, (size_t)line);
  emit_and_abort(&l);
}
#endif

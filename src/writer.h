/*
 * writer.h: text output for reports that never allocates.  Lines are
 * built in a buffer the caller owns (on its stack) and written with
 * write(2) when full or flushed, so a report works with the heap in any
 * state, in a fork child, or on the way to abort().
 */
#ifndef GPA_WRITER_H
#define GPA_WRITER_H

#include <stddef.h>
#include <stdint.h>

/* Big enough for a stack of 64 symbolised frames between flushes. */
#define WRITER_BUFFER 4096

typedef struct writer {
  int fd;
  size_t len;
  char buf[WRITER_BUFFER];
} writer_t;

void writer_init(writer_t *w, int fd);
void writer_str(writer_t *w, const char *s);
void writer_mem(writer_t *w, const char *s, size_t n);
void writer_char(writer_t *w, char c);
void writer_dec(writer_t *w, uint64_t v);
void writer_hex(writer_t *w, uint64_t v); /* 0x-prefixed, lower case */
/* Right-aligned in `width` columns (tables). */
void writer_dec_padded(writer_t *w, uint64_t v, unsigned width);
void writer_flush(writer_t *w);

#endif /* GPA_WRITER_H */

/*
 * writer.c: buffered report text over write(2).
 */
#include "writer.h"

#include <string.h>

#include "os.h"

void writer_init(writer_t *w, int fd) {
  w->fd = fd;
  w->len = 0;
}

void writer_flush(writer_t *w) {
  if (w->len != 0) os_write_all(w->fd, w->buf, w->len);
  w->len = 0;
}

void writer_mem(writer_t *w, const char *s, size_t n) {
  while (n != 0) {
    if (w->len == sizeof w->buf) writer_flush(w);
    size_t room = sizeof w->buf - w->len;
    size_t take = n < room ? n : room;
    memcpy(w->buf + w->len, s, take);
    w->len += take;
    s += take;
    n -= take;
  }
}

void writer_str(writer_t *w, const char *s) { writer_mem(w, s, strlen(s)); }

void writer_char(writer_t *w, char c) { writer_mem(w, &c, 1); }

void writer_dec_padded(writer_t *w, uint64_t v, unsigned width) {
  char tmp[24];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (unsigned digits = (unsigned)(sizeof tmp - i); digits < width; digits++) writer_char(w, ' ');
  writer_mem(w, tmp + i, sizeof tmp - i);
}

void writer_dec(writer_t *w, uint64_t v) { writer_dec_padded(w, v, 0); }

void writer_hex(writer_t *w, uint64_t v) {
  char tmp[18];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  tmp[--i] = 'x';
  tmp[--i] = '0';
  writer_mem(w, tmp + i, sizeof tmp - i);
}

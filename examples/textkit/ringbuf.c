#include <stdlib.h>
#include "textkit.h"

int rb_init(ringbuf *rb, size_t cap) {
  rb->buf = malloc(cap);
  rb->cap = cap; rb->head = rb->tail = rb->len = 0;
  return rb->buf ? 0 : -1;
}

void rb_free(ringbuf *rb) { free(rb->buf); rb->buf = NULL; rb->cap = rb->len = 0; }

size_t rb_write(ringbuf *rb, const unsigned char *p, size_t n) {
  size_t w = 0;
  while (w < n && rb->len < rb->cap) {
    rb->buf[rb->tail] = p[w++];
    rb->tail = (rb->tail + 1) % rb->cap;
    rb->len++;
  }
  return w;
}

size_t rb_read(ringbuf *rb, unsigned char *p, size_t n) {
  size_t r = 0;
  while (r < n && rb->len > 0) {
    p[r++] = rb->buf[rb->head];
    rb->head = (rb->head + 1) % rb->cap;
    rb->len--;
  }
  return r;
}

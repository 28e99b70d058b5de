#ifndef TEXTKIT_H
#define TEXTKIT_H
#include <stddef.h>
#include <stdint.h>

size_t b64_encode(const unsigned char *in, size_t n, char *out);
size_t b64_decode(const char *in, size_t n, unsigned char *out);

typedef struct { unsigned char *buf; size_t cap, head, tail, len; } ringbuf;
int rb_init(ringbuf *rb, size_t cap);
void rb_free(ringbuf *rb);
size_t rb_write(ringbuf *rb, const unsigned char *p, size_t n);
size_t rb_read(ringbuf *rb, unsigned char *p, size_t n);

typedef struct wf_entry { char *word; unsigned count; struct wf_entry *next; } wf_entry;
typedef struct { wf_entry **buckets; size_t nbuckets, nwords; } wordfreq;
int wf_init(wordfreq *wf, size_t nbuckets);
void wf_add(wordfreq *wf, const char *word, size_t len);
wf_entry **wf_sorted(const wordfreq *wf);
void wf_free(wordfreq *wf);

void sort_entries(wf_entry **v, size_t n);
void sort_ints(int *v, size_t n);

uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n);
uint16_t crc16_ccitt(const unsigned char *p, size_t n);
#endif

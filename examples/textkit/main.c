#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "textkit.h"

int main(void) {
  static unsigned char data[1 << 16];
  size_t n = fread(data, 1, sizeof data, stdin);
  wordfreq wf;
  if (wf_init(&wf, 257) != 0) return 1;
  for (size_t i = 0; i < n;) {
    while (i < n && !isalpha(data[i])) i++;
    size_t s = i;
    while (i < n && isalpha(data[i])) { data[i] = (unsigned char)tolower(data[i]); i++; }
    if (i > s) wf_add(&wf, (const char *)data + s, i - s);
  }
  wf_entry **v = wf_sorted(&wf);
  printf("words: %zu distinct\n", wf.nwords);
  for (size_t k = 0; v && v[k] && k < 5; k++) printf("%-12s %u\n", v[k]->word, v[k]->count);
  free(v);
  wf_free(&wf);

  char enc[64]; unsigned char dec[64];
  size_t e = b64_encode((const unsigned char *)"clang-llm", 9, enc);
  size_t d = b64_decode(enc, e, dec);
  printf("base64: %s -> %.*s\n", enc, (int)d, dec);

  ringbuf rb; unsigned char tmp[8];
  if (rb_init(&rb, 5) != 0) return 1;
  size_t w = rb_write(&rb, (const unsigned char *)"abcdefgh", 8);
  size_t r = rb_read(&rb, tmp, sizeof tmp);
  printf("ringbuf: wrote %zu read %zu: %.*s\n", w, r, (int)r, tmp);
  rb_free(&rb);

  int xs[] = {42, -7, 19, 0, 3, 3, 100, -50};
  sort_ints(xs, sizeof xs / sizeof *xs);
  printf("sorted:");
  for (size_t k = 0; k < sizeof xs / sizeof *xs; k++) printf(" %d", xs[k]);
  printf("\ncrc32: %08x crc16: %04x\n", (unsigned)crc32_update(0, data, n), (unsigned)crc16_ccitt(data, n));
  return 0;
}

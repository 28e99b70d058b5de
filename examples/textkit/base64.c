#include "textkit.h"

static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    out[o++] = tbl[v >> 18 & 63]; out[o++] = tbl[v >> 12 & 63];
    out[o++] = tbl[v >> 6 & 63]; out[o++] = tbl[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
    out[o++] = tbl[v >> 18 & 63]; out[o++] = tbl[v >> 12 & 63];
    out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
    out[o++] = '=';
  }
  out[o] = 0;
  return o;
}

static int val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

size_t b64_decode(const char *in, size_t n, unsigned char *out) {
  size_t o = 0; unsigned acc = 0; int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = val(in[i]);
    if (v < 0) continue;
    acc = acc << 6 | (unsigned)v; bits += 6;
    if (bits >= 8) { bits -= 8; out[o++] = (unsigned char)(acc >> bits & 255); }
  }
  return o;
}

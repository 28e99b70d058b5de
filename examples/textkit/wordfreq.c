#include <stdlib.h>
#include <string.h>
#include "textkit.h"

static size_t hash(const char *s, size_t n) {
  size_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
  return h;
}

int wf_init(wordfreq *wf, size_t nbuckets) {
  wf->buckets = calloc(nbuckets, sizeof *wf->buckets);
  wf->nbuckets = nbuckets; wf->nwords = 0;
  return wf->buckets ? 0 : -1;
}

void wf_add(wordfreq *wf, const char *word, size_t len) {
  size_t b = hash(word, len) % wf->nbuckets;
  for (wf_entry *e = wf->buckets[b]; e; e = e->next)
    if (strlen(e->word) == len && memcmp(e->word, word, len) == 0) { e->count++; return; }
  wf_entry *e = malloc(sizeof *e);
  if (!e) return;
  e->word = malloc(len + 1);
  if (!e->word) { free(e); return; }
  memcpy(e->word, word, len); e->word[len] = 0;
  e->count = 1; e->next = wf->buckets[b]; wf->buckets[b] = e; wf->nwords++;
}

wf_entry **wf_sorted(const wordfreq *wf) {
  wf_entry **v = malloc((wf->nwords + 1) * sizeof *v);
  size_t k = 0;
  if (!v) return NULL;
  for (size_t b = 0; b < wf->nbuckets; b++)
    for (wf_entry *e = wf->buckets[b]; e; e = e->next) v[k++] = e;
  sort_entries(v, k);
  v[k] = NULL;
  return v;
}

void wf_free(wordfreq *wf) {
  for (size_t b = 0; b < wf->nbuckets; b++) {
    wf_entry *e = wf->buckets[b];
    while (e) { wf_entry *n = e->next; free(e->word); free(e); e = n; }
  }
  free(wf->buckets);
}

#include <string.h>
#include "textkit.h"

static int entry_less(const wf_entry *a, const wf_entry *b) {
  if (a->count != b->count) return a->count > b->count;
  return strcmp(a->word, b->word) < 0;
}

/* Merge sort through a scratch-free insertion for small runs: deterministic order. */
void sort_entries(wf_entry **v, size_t n) {
  for (size_t i = 1; i < n; i++) {
    wf_entry *x = v[i]; size_t j = i;
    while (j > 0 && entry_less(x, v[j - 1])) { v[j] = v[j - 1]; j--; }
    v[j] = x;
  }
}

static void sift(int *v, size_t start, size_t end) {
  size_t root = start;
  while (2 * root + 1 <= end) {
    size_t child = 2 * root + 1, sw = root;
    if (v[sw] < v[child]) sw = child;
    if (child + 1 <= end && v[sw] < v[child + 1]) sw = child + 1;
    if (sw == root) return;
    int t = v[root]; v[root] = v[sw]; v[sw] = t; root = sw;
  }
}

void sort_ints(int *v, size_t n) {
  if (n < 2) return;
  for (size_t s = (n - 2) / 2 + 1; s-- > 0;) sift(v, s, n - 1);
  for (size_t end = n - 1; end > 0; end--) {
    int t = v[end]; v[end] = v[0]; v[0] = t;
    sift(v, 0, end - 1);
  }
}

/* vguest_pattern.h: the deterministic data pattern shared by vguest-mempat and
 * vguest-diskpat, and small helpers both use.
 *
 * The 64-bit word at word index i (byte offset 8*i of the region) for seed s is
 * splitmix64(s * 0x9E3779B97F4A7C15 + i), stored little-endian (x86 native order). A word
 * depends on its position, so a block written to the wrong place, a stale block or a
 * flipped bit is found, and the first differing byte is reported. Part of the vandra test
 * guest (guest/README.md).
 */
#ifndef VGUEST_PATTERN_H
#define VGUEST_PATTERN_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t vg_splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

static inline uint64_t vg_pattern_word(uint64_t seed, uint64_t word_index) {
  return vg_splitmix64(seed * 0x9E3779B97F4A7C15ULL + word_index);
}

/* Fills n_words words starting at word index first. */
static inline void vg_pattern_fill(uint64_t* dst, uint64_t seed, uint64_t first, size_t n_words) {
  for (size_t k = 0; k < n_words; ++k) {
    dst[k] = vg_pattern_word(seed, first + k);
  }
}

/* Verifies n_words words starting at word index first. Returns -1 when all match, else the
 * index k (relative to dst) of the first bad word; *byte gets the first differing byte
 * inside it (0..7), *want and *got the words. */
static inline long long vg_pattern_check(const uint64_t* src, uint64_t seed, uint64_t first,
                                         size_t n_words, int* byte, uint64_t* want, uint64_t* got) {
  for (size_t k = 0; k < n_words; ++k) {
    uint64_t w = vg_pattern_word(seed, first + k);
    if (src[k] != w) {
      uint64_t diff = src[k] ^ w;
      int b = 0;
      while (((diff >> (8 * b)) & 0xFF) == 0) {
        ++b;
      }
      *byte = b;
      *want = w;
      *got = src[k];
      return (long long)k;
    }
  }
  return -1;
}

/* Parses an unsigned decimal (or 0x hex) number; exits with status 2 on garbage. */
static inline uint64_t vg_parse_u64(const char* what, const char* s) {
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
    fprintf(stderr, "invalid %s '%s'\n", what, s);
    exit(2);
  }
  return (uint64_t)v;
}

#endif

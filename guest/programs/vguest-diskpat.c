/* vguest-diskpat: disk-pattern writer and checker of the vandra test guest.
 *
 * Usage:
 *   vguest-diskpat write DEV SEED [OFFSET_MIB [LEN_MIB]]  write the pattern, then fsync
 *   vguest-diskpat check DEV SEED [OFFSET_MIB [LEN_MIB]]  verify it; prints PASS or FAIL
 *   vguest-diskpat corrupt DEV BYTE_OFFSET                flip every bit of one byte
 * DEV is a block device (the test guest's data disk is /dev/vdb; /dev/vda is its boot disk) or
 * a plain file (a raw image on the host: the program is static and runs there too). The range
 * defaults to the whole device from offset 0.
 *
 * The pattern is the one of vguest_pattern.h keyed by SEED with word index = absolute byte
 * offset / 8, so each block is tied to its place on the disk. I/O uses O_DIRECT when the
 * device allows it, so `check` reads the medium (through the hypervisor), not the guest's
 * page cache; otherwise it drops the cache with posix_fadvise before reading.
 *
 * Output, one line: "PASS bytes=N seed=S" or
 * "FAIL offset=O expected=0xWORD got=0xWORD seed=S" (O: absolute offset of the first bad
 * byte), "WROTE bytes=N seed=S", "OK corrupted offset=O".
 * Exit status: 0 PASS/done, 1 FAIL, 2 usage or I/O error.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vguest_pattern.h"

#define CHUNK (1u << 20)
#define ALIGN 4096u

static void usage(void) {
  fprintf(stderr,
          "usage: vguest-diskpat write|check DEV SEED [OFFSET_MIB [LEN_MIB]]\n"
          "       vguest-diskpat corrupt DEV BYTE_OFFSET\n");
  exit(2);
}

static int open_dev(const char* dev, int flags, int* direct) {
  int fd = open(dev, flags | O_DIRECT | O_CLOEXEC);
  *direct = fd >= 0;
  if (fd < 0) {
    fd = open(dev, flags | O_CLOEXEC);
  }
  if (fd < 0) {
    fprintf(stderr, "vguest-diskpat: open %s: %s\n", dev, strerror(errno));
    exit(2);
  }
  return fd;
}

static uint64_t dev_size(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    perror("vguest-diskpat: fstat");
    exit(2);
  }
  if (S_ISBLK(st.st_mode)) {
    uint64_t n = 0;
    if (ioctl(fd, BLKGETSIZE64, &n) != 0) {
      perror("vguest-diskpat: BLKGETSIZE64");
      exit(2);
    }
    return n;
  }
  return (uint64_t)st.st_size;
}

static void full_pwrite(int fd, const void* buf, size_t n, uint64_t off) {
  const char* p = buf;
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      fprintf(stderr, "vguest-diskpat: write at %" PRIu64 ": %s\n", off,
              w < 0 ? strerror(errno) : "short write");
      exit(2);
    }
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
}

static void full_pread(int fd, void* buf, size_t n, uint64_t off) {
  char* p = buf;
  while (n > 0) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      fprintf(stderr, "vguest-diskpat: read at %" PRIu64 ": %s\n", off,
              r < 0 ? strerror(errno) : "end of device");
      exit(2);
    }
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
}

static void* aligned_buffer(size_t n) {
  void* p = NULL;
  if (posix_memalign(&p, ALIGN, n) != 0) {
    fprintf(stderr, "vguest-diskpat: out of memory\n");
    exit(2);
  }
  return p;
}

static int corrupt(const char* dev, uint64_t off) {
  int direct = 0;
  int fd = open_dev(dev, O_RDWR, &direct);
  if (off >= dev_size(fd)) {
    fprintf(stderr, "vguest-diskpat: offset beyond the device\n");
    return 2;
  }
  unsigned char* buf = aligned_buffer(ALIGN);
  uint64_t base = off & ~(uint64_t)(ALIGN - 1);
  full_pread(fd, buf, ALIGN, base);
  buf[off - base] ^= 0xFF;
  full_pwrite(fd, buf, ALIGN, base);
  if (fsync(fd) != 0) {
    perror("vguest-diskpat: fsync");
    return 2;
  }
  close(fd);
  printf("OK corrupted offset=%" PRIu64 "\n", off);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    usage();
  }
  const char* mode = argv[1];
  const char* dev = argv[2];
  if (strcmp(mode, "corrupt") == 0) {
    if (argc != 4) {
      usage();
    }
    return corrupt(dev, vg_parse_u64("BYTE_OFFSET", argv[3]));
  }
  int writing = strcmp(mode, "write") == 0;
  if ((!writing && strcmp(mode, "check") != 0) || argc > 6) {
    usage();
  }
  uint64_t seed = vg_parse_u64("SEED", argv[3]);
  int direct = 0;
  int fd = open_dev(dev, writing ? O_RDWR : O_RDONLY, &direct);
  uint64_t size = dev_size(fd);
  uint64_t off = argc > 4 ? vg_parse_u64("OFFSET_MIB", argv[4]) << 20 : 0;
  if (off > size) {
    fprintf(stderr, "vguest-diskpat: offset beyond the device (%" PRIu64 " bytes)\n", size);
    return 2;
  }
  uint64_t len =
      argc > 5 ? vg_parse_u64("LEN_MIB", argv[5]) << 20 : (size - off) & ~(uint64_t)(ALIGN - 1);
  if (len > size - off) {
    fprintf(stderr, "vguest-diskpat: range beyond the device (%" PRIu64 " bytes)\n", size);
    return 2;
  }
  uint64_t* buf = aligned_buffer(CHUNK);
  if (!writing && !direct) {
    posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
  }
  for (uint64_t pos = 0; pos < len; pos += CHUNK) {
    size_t n = len - pos < CHUNK ? (size_t)(len - pos) : CHUNK;
    uint64_t first_word = (off + pos) / 8;
    if (writing) {
      vg_pattern_fill(buf, seed, first_word, n / 8);
      full_pwrite(fd, buf, n, off + pos);
    } else {
      full_pread(fd, buf, n, off + pos);
      int byte = 0;
      uint64_t want = 0, got = 0;
      long long bad = vg_pattern_check(buf, seed, first_word, n / 8, &byte, &want, &got);
      if (bad >= 0) {
        printf("FAIL offset=%" PRIu64 " expected=0x%016" PRIx64 " got=0x%016" PRIx64
               " seed=%" PRIu64 "\n",
               off + pos + (uint64_t)bad * 8 + (uint64_t)byte, want, got, seed);
        return 1;
      }
    }
  }
  if (writing) {
    if (fsync(fd) != 0) {
      perror("vguest-diskpat: fsync");
      return 2;
    }
    printf("WROTE bytes=%" PRIu64 " seed=%" PRIu64 "\n", len, seed);
  } else {
    printf("PASS bytes=%" PRIu64 " seed=%" PRIu64 "\n", len, seed);
  }
  close(fd);
  return 0;
}

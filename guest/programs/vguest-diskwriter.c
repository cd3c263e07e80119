/* vguest-diskwriter: keeps writing stamped 4 KiB blocks to a disk region through a live
 * migration, and checks every block of the region afterwards.
 *
 * Usage:
 *   vguest-diskwriter start [-L N] [-s SOCK] DEV OFFSET_MIB LEN_MIB RATE_KIBPS
 *                          forks a resident writer: stamps every block of the region once
 *                          (generation 0, then fsync), then rewrites them round robin at
 *                          RATE_KIBPS KiB/s in one burst a second (0: as fast as the disk
 *                          takes them, which keeps a drive mirror from ever being ready);
 *                          returns
 *                          (exit 0) once SOCK answers: "STARTED pid=P blocks=N seed=S"
 *   vguest-diskwriter run [-L N] [-s SOCK] DEV OFFSET_MIB LEN_MIB RATE_KIBPS
 *                          the same in the foreground
 *   vguest-diskwriter check|status|stop [-s SOCK]
 *                          asks the resident writer (see vguest_stamp.h): check stops the
 *                          writes, fsyncs and reads every block of the region back with
 *                          O_DIRECT: "PASS blocks=N writes=W ..." (exit 0) or
 *                          "FAIL block=B want_gen=G got_gen=H reason=R ..." (exit 1; B is the
 *                          absolute block number, byte offset B*4096)
 *   -L N       test only: write number N (1-based) is counted but not stored
 * DEV: the test guest's data disk is /dev/vdb. SOCK defaults to /run/vguest-diskwriter.sock.
 * Callers choose the region so that it does not overlap vguest-diskpat's patterns.
 *
 * Each block is a stamped unit of vguest_stamp.h keyed by its absolute block number, so a
 * block written to the wrong place or a write the migration lost (the block is one
 * generation behind) is found. All I/O is O_DIRECT when the device allows it, so reads
 * come from the virtual disk, not the guest's page cache; each write is preceded by a read
 * of the block that must still hold the previous generation.
 * Exit status: 0 started/PASS, 1 FAIL, 2 usage or I/O error.
 */
#define _GNU_SOURCE
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "vguest_stamp.h"

#define DEFAULT_SOCK "/run/vguest-diskwriter.sock"
#define CHUNK (1u << 20)

typedef struct {
  int fd;
  int direct;
  uint64_t offset; /* bytes */
  uint64_t* one;   /* aligned buffer of one block */
  uint64_t* chunk; /* aligned buffer of CHUNK bytes */
} disk;

static disk g_disk;

static void usage(void) {
  fprintf(stderr,
          "usage: vguest-diskwriter start|run [-L N] [-s SOCK] DEV OFFSET_MIB LEN_MIB RATE_KIBPS\n"
          "       vguest-diskwriter check|status|stop [-s SOCK]\n");
  exit(2);
}

static int full_io(int write_it, int fd, void* buf, size_t n, uint64_t off) {
  char* p = buf;
  while (n > 0) {
    ssize_t r = write_it ? pwrite(fd, p, n, (off_t)off) : pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      fprintf(stderr, "vguest-diskwriter: %s at %" PRIu64 ": %s\n", write_it ? "write" : "read",
              off, r < 0 ? strerror(errno) : "end of device");
      return -1;
    }
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

static int write_block(vg_writer* w, uint64_t i, uint64_t gen, int check_prev, const char** why,
                       uint64_t* got_gen) {
  uint64_t off = g_disk.offset + i * VG_UNIT, index = w->first_index + i;
  if (check_prev) {
    if (!g_disk.direct) {
      posix_fadvise(g_disk.fd, (off_t)off, VG_UNIT, POSIX_FADV_DONTNEED);
    }
    if (full_io(0, g_disk.fd, g_disk.one, VG_UNIT, off) != 0) {
      return -1;
    }
    *why = vg_stamp_header_check(g_disk.one, index, gen - 1, got_gen);
  }
  vg_stamp_fill(g_disk.one, w->seed, index, gen);
  return full_io(1, g_disk.fd, g_disk.one, VG_UNIT, off);
}

static int verify_blocks(vg_writer* w, uint64_t writes, uint64_t* bad, const char** why,
                         uint64_t* got_gen) {
  if (fsync(g_disk.fd) != 0) {
    perror("vguest-diskwriter: fsync");
    return -1;
  }
  uint64_t len = w->n_units * VG_UNIT;
  if (!g_disk.direct) {
    posix_fadvise(g_disk.fd, (off_t)g_disk.offset, (off_t)len, POSIX_FADV_DONTNEED);
  }
  for (uint64_t pos = 0; pos < len; pos += CHUNK) {
    size_t n = len - pos < CHUNK ? (size_t)(len - pos) : CHUNK;
    if (full_io(0, g_disk.fd, g_disk.chunk, n, g_disk.offset + pos) != 0) {
      return -1;
    }
    for (size_t k = 0; k < n / VG_UNIT; ++k) {
      uint64_t i = pos / VG_UNIT + k;
      *why = vg_stamp_check(g_disk.chunk + k * VG_UNIT_WORDS, w->seed, w->first_index + i,
                            vg_expected_gen(writes, w->n_units, i), got_gen);
      if (*why != NULL) {
        *bad = i;
        return 0;
      }
    }
  }
  return 1;
}

static uint64_t dev_size(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return 0;
  }
  uint64_t n = (uint64_t)st.st_size;
  if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &n) != 0) {
    return 0;
  }
  return n;
}

static int setup(vg_writer* w, const char* dev, uint64_t off_mib, uint64_t len_mib,
                 uint64_t rate_kib, uint64_t lose_at) {
  g_disk.fd = open(dev, O_RDWR | O_DIRECT | O_CLOEXEC);
  g_disk.direct = g_disk.fd >= 0;
  if (g_disk.fd < 0) {
    g_disk.fd = open(dev, O_RDWR | O_CLOEXEC);
  }
  if (g_disk.fd < 0) {
    fprintf(stderr, "vguest-diskwriter: open %s: %s\n", dev, strerror(errno));
    return -1;
  }
  g_disk.offset = off_mib << 20;
  uint64_t len = len_mib << 20, size = dev_size(g_disk.fd);
  if (len == 0 || g_disk.offset + len > size) {
    fprintf(stderr,
            "vguest-diskwriter: region %" PRIu64 "+%" PRIu64 " MiB not in %s (%" PRIu64 " bytes)\n",
            off_mib, len_mib, dev, size);
    return -1;
  }
  void *one = NULL, *chunk = NULL;
  if (posix_memalign(&one, VG_UNIT, VG_UNIT) != 0 || posix_memalign(&chunk, VG_UNIT, CHUNK) != 0) {
    fprintf(stderr, "vguest-diskwriter: out of memory\n");
    return -1;
  }
  g_disk.one = one;
  g_disk.chunk = chunk;
  memset(w, 0, sizeof *w);
  w->unit_name = "block";
  w->n_units = len / VG_UNIT;
  w->first_index = g_disk.offset / VG_UNIT;
  w->seed = vg_run_seed();
  w->lose_at = lose_at;
  /* One burst a second, then quiet: QEMU's drive mirror reports ready only at a moment with
   * nothing dirty and nothing in flight, which a disk written every few ms never gives it
   * once each copy takes a WAN round trip (the guest would hold its migration in the
   * mirror phase for good). */
  w->slice_ns = 1000000000LL;
  w->milli_per_slice = (long long)(rate_kib * 1000ULL / 4ULL); /* 4 KiB blocks per second */
  w->write_unit = write_block;
  w->verify_all = verify_blocks;
  w->writing = 1;
  /* Generation 0 everywhere, so the region holds nothing of an earlier run. */
  for (uint64_t pos = 0; pos < len; pos += CHUNK) {
    size_t n = len - pos < CHUNK ? (size_t)(len - pos) : CHUNK;
    for (size_t k = 0; k < n / VG_UNIT; ++k) {
      vg_stamp_fill(g_disk.chunk + k * VG_UNIT_WORDS, w->seed, w->first_index + pos / VG_UNIT + k,
                    0);
    }
    if (full_io(1, g_disk.fd, g_disk.chunk, n, g_disk.offset + pos) != 0) {
      return -1;
    }
  }
  if (fsync(g_disk.fd) != 0) {
    perror("vguest-diskwriter: fsync");
    return -1;
  }
  w->started_ns = vg_now_ns();
  return 0;
}

int main(int argc, char** argv) {
  const char* sock = DEFAULT_SOCK;
  const char* pos[6];
  int npos = 0;
  uint64_t lose_at = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
      sock = argv[++i];
    } else if (strcmp(argv[i], "-L") == 0 && i + 1 < argc) {
      lose_at = vg_parse_u64("N", argv[++i]);
    } else if (npos < 6) {
      pos[npos++] = argv[i];
    } else {
      usage();
    }
  }
  if (npos == 0) {
    usage();
  }
  const char* cmd = pos[0];
  const char* req = strcmp(cmd, "check") == 0    ? "CHECK"
                    : strcmp(cmd, "status") == 0 ? "STATUS"
                    : strcmp(cmd, "stop") == 0   ? "STOP"
                                                 : NULL;
  if (req != NULL) {
    if (npos != 1) {
      usage();
    }
    return vg_client(sock, req);
  }
  int start = strcmp(cmd, "start") == 0;
  if ((!start && strcmp(cmd, "run") != 0) || npos != 5) {
    usage();
  }
  const char* dev = pos[1];
  uint64_t off_mib = vg_parse_u64("OFFSET_MIB", pos[2]);
  uint64_t len_mib = vg_parse_u64("LEN_MIB", pos[3]);
  uint64_t rate = vg_parse_u64("RATE_KIBPS", pos[4]);
  if (off_mib > (1u << 24) || len_mib > (1u << 24) || rate > 100000000) {
    usage();
  }
  int p[2] = {-1, -1};
  if (start && pipe2(p, O_CLOEXEC) != 0) {
    perror("vguest-diskwriter: pipe");
    return 2;
  }
  pid_t pid = start ? fork() : 0;
  if (pid < 0) {
    perror("vguest-diskwriter: fork");
    return 2;
  }
  if (pid == 0) {
    vg_writer w;
    if (start) {
      close(p[0]);
      setsid();
    }
    if (setup(&w, dev, off_mib, len_mib, rate, lose_at) != 0) {
      _exit(2);
    }
    int lfd = vg_listen_unix(sock);
    if (lfd < 0) {
      _exit(2);
    }
    if (start) {
      char line[96];
      snprintf(line, sizeof line, "blocks=%" PRIu64 " seed=%" PRIu64 "\n", w.n_units, w.seed);
      vg_write_all(p[1], line, strlen(line));
      vg_daemon_ready(p[1]);
    }
    int rc = vg_writer_run(&w, lfd, 0);
    unlink(sock);
    if (!start) {
      char done[160];
      vg_done_line(&w, done, sizeof done);
      printf("%s\n", done);
      fflush(stdout);
    }
    _exit(rc);
  }
  close(p[1]);
  char buf[128];
  size_t n = 0;
  for (;;) {
    ssize_t r = read(p[0], buf + n, sizeof buf - 1 - n);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      break;
    }
    n += (size_t)r;
  }
  buf[n] = '\0';
  if (n < 2 || buf[n - 1] != 'R') {
    int st = 0;
    waitpid(pid, &st, 0);
    fprintf(stderr, "vguest-diskwriter: resident writer failed to start\n");
    return 2;
  }
  buf[n - 2] = '\0'; /* the newline before 'R' */
  printf("STARTED pid=%d %s\n", (int)pid, buf);
  return 0;
}

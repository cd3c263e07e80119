/* vguest_stamp.h: self-checking 4 KiB units and the resident-writer loop shared by
 * vguest-dirtier (memory pages) and vguest-diskwriter (disk blocks).
 *
 * A unit (one page or block) written for the g-th time carries:
 *   word 0  magic 0x504D5453444E4156 ("VANDSTMP" little-endian)
 *   word 1  its index (page index in the working set, or absolute block number on the disk)
 *   word 2  its generation g (0 = the initial fill, then one more per write)
 *   word 3  checksum of words 4..511
 *   words 4..511  derived from (seed, index, generation), so a stale, misplaced or torn
 *                 unit differs from the expected one.
 * Units are written round robin from index 0, so after W writes unit i must hold
 * generation W / N + (i < W % N ? 1 : 0): a checker knows every unit's generation without
 * a log, and a write lost anywhere shows as a unit one generation behind.
 *
 * The writer also checks each unit just before overwriting it (it must still hold the
 * previous generation), so a write lost early in a run is found even after later rounds
 * would have covered it up; the first such finding is latched and reported by CHECK.
 *
 * Control, as vguest-mempat: a Unix stream socket, one request line and one reply line
 * per connection:
 *   CHECK  -> stops writing for good (after the lost write of -L, if not yet done), then
 *             "PASS <units>=N writes=W gen_min=A gen_max=B seed=S" or
 *             "FAIL <unit>=I want_gen=G got_gen=H reason=R writes=W found=write|check"
 *   STATUS -> "STATUS pid=P <units>=N writes=W writing=0|1 lose=L"
 *   STOP   -> "DONE writes=W bytes=B seconds=S rate_mbps=R", then the process exits
 * Part of the vandra test guest (guest/README.md).
 */
#ifndef VGUEST_STAMP_H
#define VGUEST_STAMP_H

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vguest_pattern.h"

#define VG_UNIT 4096u
#define VG_UNIT_WORDS (VG_UNIT / 8u)
#define VG_STAMP_MAGIC 0x504D5453444E4156ULL
#define VG_SLICE_NS 10000000LL

static inline uint64_t vg_stamp_base(uint64_t seed, uint64_t index, uint64_t gen) {
  return vg_splitmix64(seed ^ vg_splitmix64(index * 0x9E3779B97F4A7C15ULL + gen));
}

/* Cheap per word (TCG runs it for every byte the writer dirties): an add per word for
 * the body and a multiply per word for the checksum. */
static inline void vg_stamp_fill(uint64_t* u, uint64_t seed, uint64_t index, uint64_t gen) {
  uint64_t w = vg_stamp_base(seed, index, gen), sum = 0xCBF29CE484222325ULL;
  for (unsigned k = 4; k < VG_UNIT_WORDS; ++k) {
    w += 0x9E3779B97F4A7C15ULL;
    u[k] = w;
    sum = (sum ^ w) * 0x100000001B3ULL;
  }
  u[0] = VG_STAMP_MAGIC;
  u[1] = index;
  u[2] = gen;
  u[3] = sum;
}

/* Checks the header only (magic, index, generation). Returns NULL when it matches, else
 * the reason; *got_gen gets the stored generation word. */
static inline const char* vg_stamp_header_check(const uint64_t* u, uint64_t index, uint64_t gen,
                                                uint64_t* got_gen) {
  *got_gen = u[2];
  if (u[0] != VG_STAMP_MAGIC) {
    return "magic";
  }
  if (u[1] != index) {
    return "index";
  }
  return u[2] == gen ? NULL : "generation";
}

/* Full check: header, checksum and every body word. */
static inline const char* vg_stamp_check(const uint64_t* u, uint64_t seed, uint64_t index,
                                         uint64_t gen, uint64_t* got_gen) {
  const char* why = vg_stamp_header_check(u, index, gen, got_gen);
  if (why != NULL) {
    return why;
  }
  uint64_t w = vg_stamp_base(seed, index, gen), sum = 0xCBF29CE484222325ULL;
  for (unsigned k = 4; k < VG_UNIT_WORDS; ++k) {
    w += 0x9E3779B97F4A7C15ULL;
    if (u[k] != w) {
      return "body";
    }
    sum = (sum ^ u[k]) * 0x100000001B3ULL;
  }
  return u[3] == sum ? NULL : "checksum";
}

/* Generation unit i must hold after `writes` round-robin writes over n units. */
static inline uint64_t vg_expected_gen(uint64_t writes, uint64_t n, uint64_t i) {
  return writes / n + (i < writes % n ? 1 : 0);
}

static inline long long vg_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void vg_write_all(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

/* Reads one line (without '\n') of at most len-1 bytes. Returns its length or -1. */
static inline int vg_read_line(int fd, char* buf, size_t len) {
  size_t n = 0;
  while (n + 1 < len) {
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0 || c == '\n') {
      break;
    }
    buf[n++] = c;
  }
  buf[n] = '\0';
  return n == 0 ? -1 : (int)n;
}

static inline int vg_unix_addr(const char* path, struct sockaddr_un* a) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a->sun_path) {
    fprintf(stderr, "socket path too long: %s\n", path);
    return -1;
  }
  strcpy(a->sun_path, path);
  return 0;
}

/* Non-blocking listener: the writer polls it between slices. */
static inline int vg_listen_unix(const char* path) {
  struct sockaddr_un a;
  if (vg_unix_addr(path, &a) != 0) {
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    perror("socket");
    return -1;
  }
  unlink(path);
  if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0 || listen(fd, 8) != 0) {
    perror("bind/listen");
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends one request, prints the reply. Exit status: 0 PASS/STATUS/DONE, 1 FAIL, 2 else. */
static inline int vg_client(const char* path, const char* req) {
  struct sockaddr_un a;
  if (vg_unix_addr(path, &a) != 0) {
    return 2;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof a) != 0) {
    fprintf(stderr, "no resident writer at %s: %s\n", path, strerror(errno));
    return 2;
  }
  char line[512];
  size_t n = strlen(req);
  memcpy(line, req, n);
  line[n++] = '\n';
  vg_write_all(fd, line, n);
  if (vg_read_line(fd, line, sizeof line) < 0) {
    fprintf(stderr, "no reply from %s\n", path);
    return 2;
  }
  close(fd);
  printf("%s\n", line);
  if (strncmp(line, "PASS", 4) == 0 || strncmp(line, "STATUS", 6) == 0 ||
      strncmp(line, "DONE", 4) == 0) {
    return 0;
  }
  return strncmp(line, "FAIL", 4) == 0 ? 1 : 2;
}

/* One resident writer: the program supplies how to write, check-before-write and verify a
 * unit; the loop below paces, counts, loses on purpose and answers the socket. */
typedef struct vg_writer vg_writer;
struct vg_writer {
  const char* unit_name; /* "page" or "block" */
  uint64_t n_units;
  uint64_t first_index; /* index stamped into unit 0 (disk: its absolute block number) */
  uint64_t seed;
  uint64_t lose_at;          /* 1-based write number counted but not stored; 0 = none */
  long long slice_ns;        /* token bucket period; 0 = VG_SLICE_NS (10 ms) */
  long long milli_per_slice; /* units per slice in 1/1000 units; 0 = as fast as possible */
  /* Writes unit i (0-based) with generation gen; when check_prev, first checks that it
   * holds gen-1 (header only) and, if not, fills why/got_gen and still writes.
   * Returns 0, or -1 on an I/O error (message printed). */
  int (*write_unit)(vg_writer* w, uint64_t i, uint64_t gen, int check_prev, const char** why,
                    uint64_t* got_gen);
  /* Verifies every unit against vg_expected_gen(writes, ...); on the first bad one fills
   * bad/why/got_gen and returns 0; 1 when all pass, -1 on I/O error. Fills gen range. */
  int (*verify_all)(vg_writer* w, uint64_t writes, uint64_t* bad, const char** why,
                    uint64_t* got_gen);
  void* ctx;
  /* State of the loop. */
  uint64_t writes;
  int writing;       /* 1 from setup until CHECK */
  char latched[256]; /* first failure seen while writing, "" if none */
  long long started_ns;
  long long next_slice; /* token bucket, kept across calls of vg_writer_run */
  long long budget;     /* milli-units */
};

static volatile sig_atomic_t g_vg_stop;

static inline void vg_on_stop(int sig) {
  (void)sig;
  g_vg_stop = 1;
}

static inline void vg_result_line(vg_writer* w, char* rep, size_t len) {
  if (w->latched[0] != '\0') {
    snprintf(rep, len, "%s", w->latched);
    return;
  }
  uint64_t bad = 0, got = 0;
  const char* why = NULL;
  int ok = w->verify_all(w, w->writes, &bad, &why, &got);
  if (ok < 0) {
    snprintf(rep, len, "ERR I/O error while verifying");
  } else if (ok == 0) {
    snprintf(rep, len,
             "FAIL %s=%" PRIu64 " want_gen=%" PRIu64 " got_gen=%" PRIu64
             " reason=%s writes=%" PRIu64 " found=check",
             w->unit_name, w->first_index + bad, vg_expected_gen(w->writes, w->n_units, bad), got,
             why, w->writes);
  } else {
    snprintf(rep, len,
             "PASS %ss=%" PRIu64 " writes=%" PRIu64 " gen_min=%" PRIu64 " gen_max=%" PRIu64
             " seed=%" PRIu64,
             w->unit_name, w->n_units, w->writes, w->writes / w->n_units,
             (w->writes + w->n_units - 1) / w->n_units, w->seed);
  }
}

static inline int vg_write_next(vg_writer* w) {
  uint64_t i = w->writes % w->n_units, gen = w->writes / w->n_units + 1;
  ++w->writes;
  if (w->writes == w->lose_at) {
    return 0; /* counted, not stored: the checkers must find it */
  }
  const char* why = NULL;
  uint64_t got = 0;
  if (w->write_unit(w, i, gen, w->latched[0] == '\0', &why, &got) != 0) {
    return -1;
  }
  if (why != NULL && w->latched[0] == '\0') {
    snprintf(w->latched, sizeof w->latched,
             "FAIL %s=%" PRIu64 " want_gen=%" PRIu64 " got_gen=%" PRIu64
             " reason=%s writes=%" PRIu64 " found=write",
             w->unit_name, w->first_index + i, gen - 1, got, why, w->writes);
  }
  return 0;
}

static inline void vg_done_line(vg_writer* w, char* rep, size_t len) {
  double secs = (double)(vg_now_ns() - w->started_ns) / 1e9;
  snprintf(rep, len, "DONE writes=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f rate_mbps=%.2f",
           w->writes, w->writes * VG_UNIT, secs,
           secs > 0 ? (double)w->writes * VG_UNIT / 1e6 / secs : 0.0);
}

/* Answers one pending connection, if any. Returns 1 on STOP. */
static inline int vg_serve_one(vg_writer* w, int lfd, int block) {
  if (lfd < 0) {
    return 0;
  }
  if (block) {
    int fl = fcntl(lfd, F_GETFL);
    fcntl(lfd, F_SETFL, fl & ~O_NONBLOCK);
  }
  int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) {
    return 0;
  }
  /* The client writes its line at once; a blocking read with a short timeout keeps a
   * silent client from stalling the writer for long. */
  struct timeval tv = {1, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char req[128], rep[320];
  int stop = 0;
  if (vg_read_line(c, req, sizeof req) < 0) {
    snprintf(rep, sizeof rep, "ERR empty request");
  } else if (strcmp(req, "CHECK") == 0) {
    while (w->lose_at != 0 && w->writes < w->lose_at && w->writing) {
      if (vg_write_next(w) != 0) { /* reach the lost write before stopping (-L) */
        break;
      }
    }
    w->writing = 0;
    vg_result_line(w, rep, sizeof rep);
  } else if (strcmp(req, "STATUS") == 0) {
    snprintf(rep, sizeof rep,
             "STATUS pid=%d %ss=%" PRIu64 " writes=%" PRIu64 " writing=%d lose=%" PRIu64,
             (int)getpid(), w->unit_name, w->n_units, w->writes, w->writing, w->lose_at);
  } else if (strcmp(req, "STOP") == 0) {
    vg_done_line(w, rep, sizeof rep);
    stop = 1;
  } else {
    snprintf(rep, sizeof rep, "ERR unknown request");
  }
  size_t n = strlen(rep);
  rep[n++] = '\n';
  vg_write_all(c, rep, n);
  close(c);
  return stop;
}

/* Runs until STOP, SIGTERM/SIGINT or end_ns (0: none). Writes at the set rate while
 * writing; after CHECK only serves the socket. Returns 0, or 2 on an I/O error. */
static inline int vg_writer_run(vg_writer* w, int lfd, long long end_ns) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = vg_on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (w->next_slice == 0) {
    w->next_slice = w->started_ns;
  }
  const long long slice = w->slice_ns ? w->slice_ns : VG_SLICE_NS;
  while (!g_vg_stop) {
    long long t = vg_now_ns();
    if (end_ns && t >= end_ns) {
      break;
    }
    if (vg_serve_one(w, lfd, !w->writing && !end_ns)) {
      return 0;
    }
    if (!w->writing) {
      if (lfd < 0 || end_ns) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    long long n;
    if (w->milli_per_slice == 0) {
      n = 256;
    } else {
      if (t < w->next_slice) {
        /* Until the next slice, or a request (answered at once, not a slice later). */
        long long left = w->next_slice - t;
        struct timespec ts = {(time_t)(left / 1000000000LL), (long)(left % 1000000000LL)};
        if (lfd >= 0) {
          struct pollfd p = {lfd, POLLIN, 0};
          ppoll(&p, 1, &ts, NULL);
        } else {
          nanosleep(&ts, NULL);
        }
        continue;
      }
      w->budget += w->milli_per_slice;
      w->next_slice += slice;
      if (w->next_slice < t - 1000000000LL - slice) {
        w->next_slice = t; /* fell far behind (guest paused): do not burst to catch up */
        w->budget = w->milli_per_slice;
      }
      n = w->budget / 1000;
      w->budget -= n * 1000;
    }
    for (long long k = 0; k < n; ++k) {
      if (vg_write_next(w) != 0) {
        return 2;
      }
    }
  }
  return 0;
}

/* Daemon start: the child runs `body` (which must call vg_daemon_ready once it serves),
 * the parent returns once told so. */
static inline int vg_daemon_ready(int ready_fd) {
  vg_write_all(ready_fd, "R", 1);
  close(ready_fd);
  /* Leave the parent's stdout (a pipe vguest-seqd reads to the end) for the console. */
  int out = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (out < 0) {
    out = open("/dev/null", O_WRONLY | O_CLOEXEC);
  }
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  if (in >= 0) {
    dup2(in, 0);
  }
  return 0;
}

static inline uint64_t vg_run_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return vg_splitmix64((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec +
                       ((uint64_t)getpid() << 32));
}

#endif

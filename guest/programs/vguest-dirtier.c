/* vguest-dirtier: dirties guest memory at a set rate, the load a live migration must chase,
 * with every page it writes checkable afterwards.
 *
 * Usage:
 *   vguest-dirtier [-v] [-L N] [-s SOCK] WSS_MIB RATE_MBPS [SECONDS]
 *                          foreground; runs until SECONDS pass (0/absent: until SIGTERM or
 *                          STOP), then prints the DONE line below; answers SOCK only with -s
 *   vguest-dirtier start [-L N] [-s SOCK] WSS_MIB RATE_MBPS
 *                          forks a resident dirtier; returns (exit 0) once the working set
 *                          is filled and SOCK answers: "STARTED pid=P pages=N seed=S"
 *   vguest-dirtier check|status|stop [-s SOCK]
 *                          asks the resident dirtier (see vguest_stamp.h): check stops the
 *                          dirtying and verifies every page: "PASS pages=N writes=W ..."
 *                          (exit 0) or "FAIL page=I want_gen=G got_gen=H reason=R ..." (exit 1)
 *   WSS_MIB    working set in MiB, allocated and stamped (generation 0) once at start
 *   RATE_MBPS  dirtying rate in MB/s (10^6 bytes per second of 4 KiB pages rewritten);
 *              0 means as fast as the CPU allows
 *   -L N       test only: write number N (1-based) is counted but not stored, as if the
 *              migration had lost it; check and the writer's own checks must report it
 *   -v         print one progress line per second (foreground)
 * SOCK defaults to /run/vguest-dirtier.sock for start/check/status/stop.
 *
 * Every page of the working set is rewritten in turn (round robin) as a stamped unit of
 * vguest_stamp.h (index, generation, checksum, body), so a page whose last write did not
 * reach the target, before, during or at the pause of a migration, is one generation
 * behind. The rate is kept with a token bucket refilled every 10 ms, so the long-run rate
 * never exceeds RATE_MBPS and bursts stay within one 10 ms slice.
 * Foreground end line: "DONE pages=P bytes=B seconds=S rate_mbps=R wss_mib=W target_mbps=T"
 * Exit status: 0 done/PASS, 1 FAIL, 2 usage or allocation error.
 */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "vguest_stamp.h"

#define DEFAULT_SOCK "/run/vguest-dirtier.sock"

static unsigned char* g_mem;

static void usage(void) {
  fprintf(stderr,
          "usage: vguest-dirtier [-v] [-L N] [-s SOCK] WSS_MIB RATE_MBPS [SECONDS]\n"
          "       vguest-dirtier start [-L N] [-s SOCK] WSS_MIB RATE_MBPS\n"
          "       vguest-dirtier check|status|stop [-s SOCK]\n");
  exit(2);
}

static int write_page(vg_writer* w, uint64_t i, uint64_t gen, int check_prev, const char** why,
                      uint64_t* got_gen) {
  uint64_t* u = (uint64_t*)(g_mem + i * VG_UNIT);
  if (check_prev) {
    *why = vg_stamp_header_check(u, i, gen - 1, got_gen);
  }
  vg_stamp_fill(u, w->seed, i, gen);
  return 0;
}

static int verify_pages(vg_writer* w, uint64_t writes, uint64_t* bad, const char** why,
                        uint64_t* got_gen) {
  for (uint64_t i = 0; i < w->n_units; ++i) {
    const uint64_t* u = (const uint64_t*)(g_mem + i * VG_UNIT);
    *why = vg_stamp_check(u, w->seed, i, vg_expected_gen(writes, w->n_units, i), got_gen);
    if (*why != NULL) {
      *bad = i;
      return 0;
    }
  }
  return 1;
}

static int setup(vg_writer* w, uint64_t wss_mib, uint64_t rate, uint64_t lose_at) {
  size_t bytes = (size_t)wss_mib << 20;
  g_mem =
      mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (g_mem == MAP_FAILED) {
    perror("vguest-dirtier: mmap");
    return -1;
  }
  memset(w, 0, sizeof *w);
  w->unit_name = "page";
  w->n_units = bytes / VG_UNIT;
  w->seed = vg_run_seed();
  w->lose_at = lose_at;
  /* Pages per 10 ms slice, in 1/1000 page units so that low rates are kept exactly. */
  w->milli_per_slice = (long long)(rate * 1000000ULL * 1000ULL / VG_UNIT / 100ULL);
  w->write_unit = write_page;
  w->verify_all = verify_pages;
  w->writing = 1;
  for (uint64_t i = 0; i < w->n_units; ++i) {
    vg_stamp_fill((uint64_t*)(g_mem + i * VG_UNIT), w->seed, i, 0);
  }
  w->started_ns = vg_now_ns();
  return 0;
}

static int foreground(uint64_t wss_mib, uint64_t rate, uint64_t seconds, uint64_t lose_at,
                      const char* sock, int verbose) {
  vg_writer w;
  if (setup(&w, wss_mib, rate, lose_at) != 0) {
    return 2;
  }
  int lfd = sock ? vg_listen_unix(sock) : -1;
  if (sock && lfd < 0) {
    return 2;
  }
  long long end = seconds ? w.started_ns + (long long)seconds * 1000000000LL : 0;
  int rc = 0;
  if (!verbose) {
    rc = vg_writer_run(&w, lfd, end);
  } else {
    /* One-second legs, a progress line after each. */
    uint64_t last = 0;
    for (long long leg = w.started_ns + 1000000000LL; !g_vg_stop && rc == 0; leg += 1000000000LL) {
      long long stop_at = end && end < leg ? end : leg;
      rc = vg_writer_run(&w, lfd, stop_at);
      printf("dirtier: t=%.1fs pages=%" PRIu64 " rate_mbps=%.1f\n",
             (double)(vg_now_ns() - w.started_ns) / 1e9, w.writes,
             (double)(w.writes - last) * VG_UNIT / 1e6);
      fflush(stdout);
      last = w.writes;
      if (end && stop_at == end) {
        break;
      }
    }
  }
  if (sock) {
    unlink(sock);
  }
  double secs = (double)(vg_now_ns() - w.started_ns) / 1e9;
  printf("DONE pages=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f rate_mbps=%.2f wss_mib=%" PRIu64
         " target_mbps=%" PRIu64 "\n",
         w.writes, w.writes * VG_UNIT, secs,
         secs > 0 ? (double)w.writes * VG_UNIT / 1e6 / secs : 0.0, wss_mib, rate);
  return rc;
}

static int start_daemon(uint64_t wss_mib, uint64_t rate, uint64_t lose_at, const char* sock) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    perror("vguest-dirtier: pipe");
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("vguest-dirtier: fork");
    return 2;
  }
  if (pid == 0) {
    close(p[0]);
    setsid();
    vg_writer w;
    if (setup(&w, wss_mib, rate, lose_at) != 0) {
      _exit(2);
    }
    int lfd = vg_listen_unix(sock);
    if (lfd < 0) {
      _exit(2);
    }
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64 "\n", w.seed);
    vg_write_all(p[1], seed, strlen(seed));
    vg_daemon_ready(p[1]);
    int rc = vg_writer_run(&w, lfd, 0);
    unlink(sock);
    _exit(rc);
  }
  close(p[1]);
  char buf[64];
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
  if (n == 0 || buf[n - 1] != 'R') {
    int st = 0;
    waitpid(pid, &st, 0);
    fprintf(stderr, "vguest-dirtier: resident dirtier failed to start\n");
    return 2;
  }
  printf("STARTED pid=%d pages=%" PRIu64 " seed=%" PRIu64 "\n", (int)pid,
         ((uint64_t)wss_mib << 20) / VG_UNIT, (uint64_t)strtoull(buf, NULL, 10));
  return 0;
}

int main(int argc, char** argv) {
  const char* sock = NULL;
  const char* pos[4];
  int npos = 0, verbose = 0;
  uint64_t lose_at = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-v") == 0) {
      verbose = 1;
    } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
      sock = argv[++i];
    } else if (strcmp(argv[i], "-L") == 0 && i + 1 < argc) {
      lose_at = vg_parse_u64("N", argv[++i]);
    } else if (npos < 4) {
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
    return vg_client(sock ? sock : DEFAULT_SOCK, req);
  }
  int start = strcmp(cmd, "start") == 0;
  const char** a = pos + start;
  int na = npos - start;
  if (na < 2 || na > (start ? 2 : 3)) {
    usage();
  }
  uint64_t wss_mib = vg_parse_u64("WSS_MIB", a[0]);
  uint64_t rate = vg_parse_u64("RATE_MBPS", a[1]);
  uint64_t seconds = na == 3 ? vg_parse_u64("SECONDS", a[2]) : 0;
  if (wss_mib == 0 || wss_mib > (1u << 20) || rate > 1000000) {
    fprintf(stderr, "vguest-dirtier: WSS_MIB must be 1..1048576, RATE_MBPS 0..1000000\n");
    return 2;
  }
  if (start) {
    return start_daemon(wss_mib, rate, lose_at, sock ? sock : DEFAULT_SOCK);
  }
  return foreground(wss_mib, rate, seconds, lose_at, sock, verbose);
}

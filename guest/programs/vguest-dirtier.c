/* vguest-dirtier: dirties guest memory at a set rate, the load a live migration must chase.
 *
 * Usage: vguest-dirtier [-v] WSS_MIB RATE_MBPS [SECONDS]
 *   WSS_MIB    working set in MiB, allocated and touched once at start
 *   RATE_MBPS  dirtying rate in MB/s (10^6 bytes per second of 4 KiB pages made dirty);
 *              0 means as fast as the CPU allows
 *   SECONDS    run time; 0 or absent runs until SIGTERM/SIGINT
 *   -v         print one progress line per second
 *
 * Every page of the working set is dirtied in turn (round robin) by writing a changing
 * 64-bit value into it. The rate is kept with a token bucket refilled every 10 ms, so the
 * long-run rate never exceeds RATE_MBPS and bursts stay within one 10 ms slice.
 * At the end (time up or SIGTERM/SIGINT) it prints one line:
 *   "DONE pages=P bytes=B seconds=S rate_mbps=R wss_mib=W target_mbps=T"
 * Exit status: 0 done, 2 usage or allocation error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096u
#define SLICE_NS 10000000LL

static volatile sig_atomic_t g_stop;

static void on_stop(int sig) {
  (void)sig;
  g_stop = 1;
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t parse(const char* what, const char* s) {
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
    fprintf(stderr, "vguest-dirtier: invalid %s '%s'\n", what, s);
    exit(2);
  }
  return (uint64_t)v;
}

int main(int argc, char** argv) {
  int verbose = 0;
  int a = 1;
  if (a < argc && strcmp(argv[a], "-v") == 0) {
    verbose = 1;
    ++a;
  }
  if (argc - a < 2 || argc - a > 3) {
    fprintf(stderr, "usage: vguest-dirtier [-v] WSS_MIB RATE_MBPS [SECONDS]\n");
    return 2;
  }
  uint64_t wss_mib = parse("WSS_MIB", argv[a]);
  uint64_t rate = parse("RATE_MBPS", argv[a + 1]);
  uint64_t seconds = argc - a == 3 ? parse("SECONDS", argv[a + 2]) : 0;
  if (wss_mib == 0 || wss_mib > (1u << 20) || rate > 1000000) {
    fprintf(stderr, "vguest-dirtier: WSS_MIB must be 1..1048576, RATE_MBPS 0..1000000\n");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  size_t bytes = (size_t)wss_mib << 20;
  size_t pages = bytes / PAGE;
  unsigned char* mem =
      mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) {
    perror("vguest-dirtier: mmap");
    return 2;
  }
  /* Pages per 10 ms slice, in 1/1000 page units so that low rates are kept exactly. */
  long long milli_pages_per_slice = (long long)(rate * 1000000ULL * 1000ULL / PAGE / 100ULL);
  long long start = now_ns();
  long long end = seconds ? start + (long long)seconds * 1000000000LL : 0;
  long long next_slice = start;
  long long next_report = start + 1000000000LL;
  long long budget = 0; /* milli-pages */
  uint64_t dirtied = 0, last_reported = 0;
  size_t idx = 0;
  uint64_t stamp = 1;
  while (!g_stop) {
    long long t = now_ns();
    if (end && t >= end) {
      break;
    }
    if (verbose && t >= next_report) {
      printf("dirtier: t=%.1fs pages=%" PRIu64 " rate_mbps=%.1f\n", (double)(t - start) / 1e9,
             dirtied, (double)(dirtied - last_reported) * PAGE / 1e6);
      fflush(stdout);
      last_reported = dirtied;
      next_report += 1000000000LL;
    }
    long long n;
    if (rate == 0) {
      n = 4096;
    } else {
      if (t < next_slice) {
        struct timespec ts = {(time_t)(next_slice / 1000000000LL),
                              (long)(next_slice % 1000000000LL)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        continue;
      }
      budget += milli_pages_per_slice;
      next_slice += SLICE_NS;
      if (next_slice < t - 100 * SLICE_NS) {
        next_slice = t; /* fell far behind (guest paused): do not burst to catch up */
        budget = milli_pages_per_slice;
      }
      n = budget / 1000;
      budget -= n * 1000;
    }
    for (long long k = 0; k < n; ++k) {
      *(volatile uint64_t*)(mem + idx * PAGE) = stamp++;
      if (++idx == pages) {
        idx = 0;
      }
    }
    dirtied += (uint64_t)n;
  }
  double secs = (double)(now_ns() - start) / 1e9;
  printf("DONE pages=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f rate_mbps=%.2f wss_mib=%" PRIu64
         " target_mbps=%" PRIu64 "\n",
         dirtied, dirtied * PAGE, secs, secs > 0 ? (double)dirtied * PAGE / 1e6 / secs : 0.0,
         wss_mib, rate);
  return 0;
}

/* vguest-mempat: memory-pattern writer and checker of the vandra test guest.
 *
 * A resident process allocates MIB MiB of anonymous memory, writes the deterministic
 * pattern of vguest_pattern.h keyed by SEED into it, and then stays resident so that the
 * memory can be checked at any later time, for example after a live migration.
 *
 * Usage:
 *   vguest-mempat start MIB SEED [-s SOCK]  fork a resident daemon; returns (exit 0) once the
 *                                           pattern is written and SOCK accepts commands
 *   vguest-mempat run MIB SEED [-s SOCK]    the same in the foreground
 *   vguest-mempat check [SEED] [-s SOCK]    ask the resident process to verify its memory
 *                                           (with its own seed, or SEED); prints the reply
 *   vguest-mempat corrupt OFFSET [-s SOCK]  flip every bit of the byte at OFFSET (to prove
 *                                           the checker finds it)
 *   vguest-mempat status|stop [-s SOCK]
 *   vguest-mempat selftest MIB SEED         fill and check in one process, no daemon
 * SOCK defaults to /run/vguest-mempat.sock.
 *
 * Control: a Unix stream socket at SOCK; one request line, one reply line per connection:
 *   CHECK [SEED]   -> "PASS bytes=N seed=S" or
 *                     "FAIL offset=O expected=0xWORD got=0xWORD seed=S" (O: first bad byte)
 *   CORRUPT OFF    -> "OK corrupted offset=OFF"
 *   STATUS         -> "STATUS pid=P mib=M seed=S"
 *   STOP           -> "OK stopping", then the process exits
 * SIGUSR1 makes the resident process check with its own seed and print the result line on
 * its stdout (the serial console when started by the guest's init or vguest-seqd).
 * Client exit status: 0 PASS/OK, 1 FAIL, 2 usage or I/O error.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vguest_pattern.h"

#define DEFAULT_SOCK "/run/vguest-mempat.sock"

static uint64_t* g_mem;
static size_t g_bytes;
static uint64_t g_seed;
static volatile sig_atomic_t g_check_requested;

static void on_usr1(int sig) {
  (void)sig;
  g_check_requested = 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: vguest-mempat start|run MIB SEED [-s SOCK]\n"
          "       vguest-mempat check [SEED] [-s SOCK]\n"
          "       vguest-mempat corrupt OFFSET [-s SOCK]\n"
          "       vguest-mempat status|stop [-s SOCK]\n"
          "       vguest-mempat selftest MIB SEED\n");
  exit(2);
}

/* Writes the result line of a check into buf. Returns 1 on PASS, 0 on FAIL. */
static int check_memory(uint64_t seed, char* buf, size_t len) {
  const size_t chunk = 1 << 17; /* words: 1 MiB */
  size_t words = g_bytes / 8;
  for (size_t first = 0; first < words; first += chunk) {
    size_t n = words - first < chunk ? words - first : chunk;
    int byte = 0;
    uint64_t want = 0, got = 0;
    long long bad = vg_pattern_check(g_mem + first, seed, first, n, &byte, &want, &got);
    if (bad >= 0) {
      uint64_t off = ((uint64_t)first + (uint64_t)bad) * 8 + (uint64_t)byte;
      snprintf(buf, len,
               "FAIL offset=%" PRIu64 " expected=0x%016" PRIx64 " got=0x%016" PRIx64
               " seed=%" PRIu64,
               off, want, got, seed);
      return 0;
    }
  }
  snprintf(buf, len, "PASS bytes=%zu seed=%" PRIu64, g_bytes, seed);
  return 1;
}

static int allocate_and_fill(uint64_t mib, uint64_t seed) {
  g_bytes = (size_t)mib << 20;
  g_seed = seed;
  void* p = mmap(NULL, g_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  if (p == MAP_FAILED) {
    perror("vguest-mempat: mmap");
    return -1;
  }
  g_mem = p;
  vg_pattern_fill(g_mem, seed, 0, g_bytes / 8);
  return 0;
}

static int listen_unix(const char* path) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a.sun_path) {
    fprintf(stderr, "vguest-mempat: socket path too long\n");
    return -1;
  }
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("vguest-mempat: socket");
    return -1;
  }
  unlink(path);
  if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0 || listen(fd, 8) != 0) {
    perror("vguest-mempat: bind/listen");
    close(fd);
    return -1;
  }
  return fd;
}

static void write_all(int fd, const char* s, size_t n) {
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
static int read_line(int fd, char* buf, size_t len) {
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

/* Serves the control socket until STOP. */
static int serve(int lfd, const char* sock_path) {
  for (;;) {
    if (g_check_requested) {
      g_check_requested = 0;
      char line[256];
      check_memory(g_seed, line, sizeof line);
      printf("vguest-mempat: %s\n", line);
      fflush(stdout);
    }
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      perror("vguest-mempat: accept");
      return 2;
    }
    char req[128], rep[256];
    int stop = 0;
    if (read_line(c, req, sizeof req) < 0) {
      snprintf(rep, sizeof rep, "ERR empty request");
    } else if (strncmp(req, "CHECK", 5) == 0 && (req[5] == '\0' || req[5] == ' ')) {
      uint64_t seed = g_seed;
      if (req[5] == ' ') {
        char* end = NULL;
        seed = strtoull(req + 6, &end, 0);
      }
      check_memory(seed, rep, sizeof rep);
    } else if (strncmp(req, "CORRUPT ", 8) == 0) {
      uint64_t off = strtoull(req + 8, NULL, 0);
      if (off >= g_bytes) {
        snprintf(rep, sizeof rep, "ERR offset beyond %zu bytes", g_bytes);
      } else {
        ((volatile unsigned char*)g_mem)[off] ^= 0xFF;
        snprintf(rep, sizeof rep, "OK corrupted offset=%" PRIu64, off);
      }
    } else if (strcmp(req, "STATUS") == 0) {
      snprintf(rep, sizeof rep, "STATUS pid=%d mib=%zu seed=%" PRIu64, (int)getpid(), g_bytes >> 20,
               g_seed);
    } else if (strcmp(req, "STOP") == 0) {
      snprintf(rep, sizeof rep, "OK stopping");
      stop = 1;
    } else {
      snprintf(rep, sizeof rep, "ERR unknown request");
    }
    size_t n = strlen(rep);
    rep[n++] = '\n';
    write_all(c, rep, n);
    close(c);
    if (stop) {
      unlink(sock_path);
      return 0;
    }
  }
}

static int resident(uint64_t mib, uint64_t seed, const char* sock_path, int ready_fd) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART: accept() returns EINTR and the check runs */
  sigaction(SIGUSR1, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (allocate_and_fill(mib, seed) != 0) {
    return 2;
  }
  int lfd = listen_unix(sock_path);
  if (lfd < 0) {
    return 2;
  }
  printf("vguest-mempat: resident pid=%d mib=%" PRIu64 " seed=%" PRIu64 " sock=%s\n", (int)getpid(),
         mib, seed, sock_path);
  fflush(stdout);
  if (ready_fd >= 0) {
    /* Daemon: tell the parent, then leave its stdout (it may be a pipe someone reads to
     * the end) for the console. */
    write_all(ready_fd, "R", 1);
    close(ready_fd);
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
  }
  return serve(lfd, sock_path);
}

static int start_daemon(uint64_t mib, uint64_t seed, const char* sock_path) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    perror("vguest-mempat: pipe");
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("vguest-mempat: fork");
    return 2;
  }
  if (pid == 0) {
    close(p[0]);
    setsid();
    _exit(resident(mib, seed, sock_path, p[1]));
  }
  close(p[1]);
  char c;
  ssize_t r;
  do {
    r = read(p[0], &c, 1);
  } while (r < 0 && errno == EINTR);
  if (r != 1) {
    int st = 0;
    waitpid(pid, &st, 0);
    fprintf(stderr, "vguest-mempat: resident process failed to start\n");
    return 2;
  }
  printf("vguest-mempat: started pid=%d mib=%" PRIu64 " seed=%" PRIu64 "\n", (int)pid, mib, seed);
  return 0;
}

static int client(const char* sock_path, const char* req) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (strlen(sock_path) >= sizeof a.sun_path) {
    fprintf(stderr, "vguest-mempat: socket path too long\n");
    return 2;
  }
  strcpy(a.sun_path, sock_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof a) != 0) {
    fprintf(stderr, "vguest-mempat: no resident process at %s: %s\n", sock_path, strerror(errno));
    return 2;
  }
  char line[512];
  size_t n = strlen(req);
  memcpy(line, req, n);
  line[n++] = '\n';
  write_all(fd, line, n);
  if (read_line(fd, line, sizeof line) < 0) {
    fprintf(stderr, "vguest-mempat: no reply\n");
    return 2;
  }
  close(fd);
  printf("%s\n", line);
  if (strncmp(line, "PASS", 4) == 0 || strncmp(line, "OK", 2) == 0 ||
      strncmp(line, "STATUS", 6) == 0) {
    return 0;
  }
  return strncmp(line, "FAIL", 4) == 0 ? 1 : 2;
}

int main(int argc, char** argv) {
  const char* sock_path = DEFAULT_SOCK;
  const char* pos[4];
  int npos = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
      sock_path = argv[++i];
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
  char req[128];
  if ((strcmp(cmd, "start") == 0 || strcmp(cmd, "run") == 0 || strcmp(cmd, "selftest") == 0) &&
      npos == 3) {
    uint64_t mib = vg_parse_u64("MIB", pos[1]);
    uint64_t seed = vg_parse_u64("SEED", pos[2]);
    if (mib == 0 || mib > (1u << 20)) {
      fprintf(stderr, "vguest-mempat: MIB must be 1..1048576\n");
      return 2;
    }
    if (strcmp(cmd, "start") == 0) {
      return start_daemon(mib, seed, sock_path);
    }
    if (strcmp(cmd, "run") == 0) {
      return resident(mib, seed, sock_path, -1);
    }
    if (allocate_and_fill(mib, seed) != 0) {
      return 2;
    }
    char line[256];
    int ok = check_memory(seed, line, sizeof line);
    printf("%s\n", line);
    return ok ? 0 : 1;
  }
  if (strcmp(cmd, "check") == 0 && npos <= 2) {
    if (npos == 2) {
      snprintf(req, sizeof req, "CHECK %" PRIu64, vg_parse_u64("SEED", pos[1]));
    } else {
      snprintf(req, sizeof req, "CHECK");
    }
    return client(sock_path, req);
  }
  if (strcmp(cmd, "corrupt") == 0 && npos == 2) {
    snprintf(req, sizeof req, "CORRUPT %" PRIu64, vg_parse_u64("OFFSET", pos[1]));
    return client(sock_path, req);
  }
  if (strcmp(cmd, "status") == 0 && npos == 1) {
    return client(sock_path, "STATUS");
  }
  if (strcmp(cmd, "stop") == 0 && npos == 1) {
    return client(sock_path, "STOP");
  }
  usage();
  return 2;
}

/* vguest-seqd: TCP echo / sequence / probe / control service of the vandra test guest.
 *
 * Usage: vguest-seqd [-p PORT] [-d]
 *   -p PORT  TCP port on every address (default 7000)
 *   -d       daemon: return (exit 0) only once the socket listens, then serve in background
 * Each connection is served by its own process. The service reaps everything it started
 * (it is a child subreaper), so programs it spawns never become zombies of PID 1.
 *
 * Protocol. A connection starts in command mode: the client sends ASCII lines ending in
 * '\n' (at most 1023 bytes); words are separated by single spaces. Replies are lines.
 *   ECHO                  -> "OK ECHO", then every byte received is sent back unchanged
 *                            until the client closes (the connection stays in echo mode).
 *   SEQ START [INTERVAL_US]
 *                         -> "OK SEQ", then an endless stream of 16-byte records:
 *                            bytes 0-7  counter, big-endian: START, START+1, START+2, ...
 *                            bytes 8-15 guest CLOCK_MONOTONIC in ns at sending, big-endian.
 *                            INTERVAL_US > 0 paces the stream on an absolute clock: the
 *                            record due at slot k carries a time in [slot k, slot k +
 *                            INTERVAL_US]; after a stall longer than one interval (guest
 *                            paused) the slots restart from now, without a catch-up burst,
 *                            so a pause shows as a jump in guest time between two records.
 *                            0 or absent sends as fast as TCP takes them.
 *                            A lost or repeated byte breaks the counter sequence at a known
 *                            place; gaps show in arrival times and guest timestamps.
 *   PROBE                 -> "OK PROBE", then binary: for every 8 bytes the client sends,
 *                            the service answers at once with 16 bytes: the same 8 bytes,
 *                            then the guest CLOCK_MONOTONIC ns (big-endian).
 *   PING TOKEN            -> "PONG TOKEN MONO_NS"
 *   INFO                  -> "INFO uptime_ms=N mem_total_kib=N mem_free_kib=N"
 *   EXEC PROG [ARGS...]   -> runs /bin/PROG (PROG must be vguest-[a-z]+) with stdout and
 *                            stderr captured: one "OUT LINE" per output line, then
 *                            "EXIT CODE" (CODE 128+N when killed by signal N).
 *   SPAWN PROG [ARGS...]  -> starts /bin/PROG (same rule) in the background with its output
 *                            on the console: "PID N".
 *   KILL PID SIGNAL       -> sends SIGNAL (a number) to PID, a process this service started:
 *                            "OK" or "ERR ...".
 *   QUIT                  -> closes the connection.
 * Any failure is answered "ERR MESSAGE". Command mode keeps the connection for further
 * commands; ECHO, SEQ and PROBE keep it until the client closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 1024
#define MAX_ARGS 32

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void put_be64(unsigned char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = (unsigned char)(v & 0xFF);
    v >>= 8;
  }
}

static int write_all(int fd, const void* buf, size_t n) {
  const char* p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int reply(int fd, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int reply(int fd, const char* fmt, ...) {
  char buf[MAX_LINE + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) {
    return -1;
  }
  if ((size_t)n > sizeof buf - 2) {
    n = (int)(sizeof buf - 2);
  }
  buf[n++] = '\n';
  return write_all(fd, buf, (size_t)n);
}

/* Buffered line reader over the connection (bytes after a line stay buffered, so a client
 * may pipeline commands). */
struct reader {
  int fd;
  char buf[MAX_LINE * 2];
  size_t len;
};

/* Returns 1 with a line in out, 0 on EOF, -1 on error or an over-long line. */
static int read_line(struct reader* r, char* out) {
  for (;;) {
    char* nl = memchr(r->buf, '\n', r->len);
    if (nl != NULL) {
      size_t n = (size_t)(nl - r->buf);
      if (n >= MAX_LINE) {
        return -1;
      }
      memcpy(out, r->buf, n);
      out[n] = '\0';
      if (n > 0 && out[n - 1] == '\r') {
        out[n - 1] = '\0';
      }
      memmove(r->buf, nl + 1, r->len - n - 1);
      r->len -= n + 1;
      return 1;
    }
    if (r->len >= MAX_LINE) {
      return -1;
    }
    ssize_t got = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return -1;
    }
    if (got == 0) {
      return 0;
    }
    r->len += (size_t)got;
  }
}

static void do_echo(struct reader* r) {
  if (r->len > 0 && write_all(r->fd, r->buf, r->len) != 0) {
    return;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = read(r->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0 || write_all(r->fd, buf, (size_t)n) != 0) {
      return;
    }
  }
}

static void do_seq(int fd, uint64_t start, uint64_t interval_us) {
  unsigned char rec[16 * 256];
  uint64_t counter = start;
  const uint64_t interval = interval_us * 1000ULL;
  uint64_t next = mono_ns();
  for (;;) {
    size_t n = sizeof rec / 16;
    uint64_t t = mono_ns();
    if (interval > 0) {
      if (t < next) {
        struct timespec ts = {(time_t)(next / 1000000000ULL), (long)(next % 1000000000ULL)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        continue; /* sample the clock again */
      }
      if (t - next > interval) {
        next = t; /* late by more than an interval (guest paused): no catch-up burst */
      }
      next += interval;
      n = 1;
    }
    for (size_t i = 0; i < n; ++i) {
      put_be64(rec + 16 * i, counter++);
      put_be64(rec + 16 * i + 8, t);
    }
    if (write_all(fd, rec, 16 * n) != 0) {
      return;
    }
  }
}

static void do_probe(struct reader* r) {
  unsigned char in[8];
  size_t have = 0;
  for (;;) {
    if (r->len > 0) {
      size_t take = r->len < 8 - have ? r->len : 8 - have;
      memcpy(in + have, r->buf, take);
      memmove(r->buf, r->buf + take, r->len - take);
      r->len -= take;
      have += take;
    } else {
      ssize_t n = read(r->fd, in + have, 8 - have);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return;
      }
      have += (size_t)n;
    }
    if (have == 8) {
      unsigned char out[16];
      memcpy(out, in, 8);
      put_be64(out + 8, mono_ns());
      if (write_all(r->fd, out, sizeof out) != 0) {
        return;
      }
      have = 0;
    }
  }
}

static int split(char* line, char** argv) {
  int n = 0;
  for (char* tok = strtok(line, " "); tok != NULL && n < MAX_ARGS; tok = strtok(NULL, " ")) {
    argv[n++] = tok;
  }
  argv[n] = NULL;
  return n;
}

static int allowed_program(const char* prog) {
  if (strncmp(prog, "vguest-", 7) != 0 || prog[7] == '\0') {
    return 0;
  }
  for (const char* p = prog + 7; *p; ++p) {
    if (*p < 'a' || *p > 'z') {
      return 0;
    }
  }
  return 1;
}

static int parse_u64(const char* s, uint64_t* v) {
  char* end = NULL;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
    return -1;
  }
  *v = (uint64_t)x;
  return 0;
}

/* Child side of EXEC/SPAWN: out_fd becomes stdout and stderr. */
static void exec_program(char** args, int out_fd) {
  char path[64];
  snprintf(path, sizeof path, "/bin/%s", args[0]);
  int in = open("/dev/null", O_RDONLY);
  if (in >= 0) {
    dup2(in, 0);
  }
  dup2(out_fd, 1);
  dup2(out_fd, 2);
  signal(SIGPIPE, SIG_DFL);
  execv(path, args);
  fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
  _exit(127);
}

static void do_exec(int fd, char** args) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    reply(fd, "ERR pipe: %s", strerror(errno));
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    reply(fd, "ERR fork: %s", strerror(errno));
    close(p[0]);
    close(p[1]);
    return;
  }
  if (pid == 0) {
    close(p[0]);
    exec_program(args, p[1]);
  }
  close(p[1]);
  char buf[4096], line[MAX_LINE];
  size_t len = 0;
  int peer_gone = 0;
  for (;;) {
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n' || len == sizeof line - 1) {
        line[len] = '\0';
        if (!peer_gone && reply(fd, "OUT %s", line) != 0) {
          peer_gone = 1;
        }
        len = 0;
        if (buf[i] == '\n') {
          continue;
        }
      }
      line[len++] = buf[i];
    }
  }
  if (len > 0 && !peer_gone) {
    line[len] = '\0';
    reply(fd, "OUT %s", line);
  }
  close(p[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  reply(fd, "EXIT %d", code);
}

static void do_spawn(int fd, char** args) {
  pid_t pid = fork();
  if (pid < 0) {
    reply(fd, "ERR fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    setsid();
    int out = open("/dev/console", O_WRONLY | O_NOCTTY);
    if (out < 0) {
      out = open("/dev/null", O_WRONLY);
    }
    exec_program(args, out);
  }
  reply(fd, "PID %d", (int)pid);
}

static void serve(int fd) {
  struct reader r = {.fd = fd, .len = 0};
  char line[MAX_LINE];
  char* argv[MAX_ARGS + 1];
  for (;;) {
    int got = read_line(&r, line);
    if (got <= 0) {
      if (got < 0) {
        reply(fd, "ERR line too long or read error");
      }
      return;
    }
    int argc = split(line, argv);
    if (argc == 0) {
      continue;
    }
    const char* cmd = argv[0];
    uint64_t a = 0, b = 0;
    if (strcmp(cmd, "ECHO") == 0 && argc == 1) {
      if (reply(fd, "OK ECHO") == 0) {
        do_echo(&r);
      }
      return;
    } else if (strcmp(cmd, "SEQ") == 0 && (argc == 2 || argc == 3)) {
      if (parse_u64(argv[1], &a) != 0 || (argc == 3 && parse_u64(argv[2], &b) != 0)) {
        reply(fd, "ERR usage: SEQ START [INTERVAL_US]");
        continue;
      }
      if (reply(fd, "OK SEQ") == 0) {
        do_seq(fd, a, b);
      }
      return;
    } else if (strcmp(cmd, "PROBE") == 0 && argc == 1) {
      if (reply(fd, "OK PROBE") == 0) {
        do_probe(&r);
      }
      return;
    } else if (strcmp(cmd, "PING") == 0 && argc == 2) {
      reply(fd, "PONG %s %" PRIu64, argv[1], mono_ns());
    } else if (strcmp(cmd, "INFO") == 0 && argc == 1) {
      unsigned long long total = 0, avail = 0;
      FILE* f = fopen("/proc/meminfo", "r");
      if (f != NULL) {
        char l[256];
        while (fgets(l, sizeof l, f) != NULL) {
          sscanf(l, "MemTotal: %llu", &total);
          sscanf(l, "MemFree: %llu", &avail);
        }
        fclose(f);
      }
      struct timespec ts;
      clock_gettime(CLOCK_BOOTTIME, &ts);
      reply(fd, "INFO uptime_ms=%lld mem_total_kib=%llu mem_free_kib=%llu",
            (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, total, avail);
    } else if ((strcmp(cmd, "EXEC") == 0 || strcmp(cmd, "SPAWN") == 0) && argc >= 2) {
      if (!allowed_program(argv[1])) {
        reply(fd, "ERR only vguest-* programs may run");
        continue;
      }
      if (cmd[0] == 'E') {
        do_exec(fd, argv + 1);
      } else {
        do_spawn(fd, argv + 1);
      }
    } else if (strcmp(cmd, "KILL") == 0 && argc == 3) {
      if (parse_u64(argv[1], &a) != 0 || parse_u64(argv[2], &b) != 0 || a < 2 || b > 64) {
        reply(fd, "ERR usage: KILL PID SIGNAL");
      } else if (kill((pid_t)a, (int)b) != 0) {
        reply(fd, "ERR kill: %s", strerror(errno));
      } else {
        reply(fd, "OK");
      }
    } else if (strcmp(cmd, "QUIT") == 0) {
      return;
    } else {
      reply(fd, "ERR unknown command or wrong arguments: %s", cmd);
    }
  }
}

static void reap(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char** argv) {
  int port = 7000, daemonize = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (strcmp(argv[i], "-d") == 0) {
      daemonize = 1;
    } else {
      fprintf(stderr, "usage: vguest-seqd [-p PORT] [-d]\n");
      return 2;
    }
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "vguest-seqd: invalid port\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int v6 = lfd >= 0;
  if (!v6) {
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  if (lfd < 0) {
    perror("vguest-seqd: socket");
    return 1;
  }
  int one = 1, zero = 0;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)port);
    a6.sin6_addr = in6addr_any;
    rc = bind(lfd, (struct sockaddr*)&a6, sizeof a6);
  } else {
    struct sockaddr_in a4;
    memset(&a4, 0, sizeof a4);
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)port);
    a4.sin_addr.s_addr = htonl(INADDR_ANY);
    rc = bind(lfd, (struct sockaddr*)&a4, sizeof a4);
  }
  if (rc != 0 || listen(lfd, 64) != 0) {
    perror("vguest-seqd: bind/listen");
    return 1;
  }
  if (daemonize) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("vguest-seqd: fork");
      return 1;
    }
    if (pid > 0) {
      printf("vguest-seqd: listening on port %d pid=%d\n", port, (int)pid);
      return 0;
    }
    setsid();
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = reap;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  for (;;) {
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
        continue;
      }
      perror("vguest-seqd: accept");
      return 1;
    }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pid_t pid = fork();
    if (pid == 0) {
      close(lfd);
      struct sigaction dfl;
      memset(&dfl, 0, sizeof dfl);
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGCHLD, &dfl, NULL);
      serve(c);
      _exit(0);
    }
    close(c);
  }
}

#include "cli_support.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "migration_summary.h"

namespace vandra::cli {

int exitCodeFor(ErrorCode code) {
  if (code == ErrorCode::Ok) {
    return 0;
  }
  switch (kindOf(code)) {
    case ErrorKind::Failure:
    case ErrorKind::Timeout:
      return 1;
    case ErrorKind::NotFound:
      return 4;
    case ErrorKind::Busy:
      return 5;
    case ErrorKind::Forbidden:
      return 6;
    case ErrorKind::BadRequest:
    case ErrorKind::BadInput:
    case ErrorKind::Conflict:
    case ErrorKind::TooLarge:
    case ErrorKind::NoCapacity:
      return 3;
  }
  return 1;
}

Result<std::string> readSmallFile(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(Error::fromErrno("Cannot read '" + path + "'"));
  }
  std::string out;
  std::array<char, 65536> buf{};
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    out.append(buf.data(), static_cast<size_t>(in.gcount()));
    if (out.size() > limit) {
      return fail(ErrorCode::LimitExceeded,
                  "'" + path + "' is larger than " + std::to_string(limit) + " bytes");
    }
  }
  return out;
}

int reportError(const std::string& what, const Error& e) {
  std::string line = e.describe();
  for (char& c : line) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  std::cerr << "vandra: " << what << ": " << line << " [" << toString(e.code) << "]\n";
  return exitCodeFor(e.code);
}

namespace {
// The width of the terminal on stderr ($COLUMNS, else 80, when it does not say).
size_t terminalColumns() {
  winsize ws{};
  if (::ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  if (const char* c = std::getenv("COLUMNS"); c != nullptr && std::atoi(c) > 0) {
    return static_cast<size_t>(std::atoi(c));
  }
  return 80;
}
}  // namespace

ProgressBar::ProgressBar(bool enabled) : enabled_(enabled && ::isatty(2) == 1) {}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(const std::string& stage, double fraction, const std::string& detail) {
  if (!enabled_) {
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  const bool new_stage = stage != stage_;
  if (!new_stage && fraction < 1.0 && now - last_ < std::chrono::milliseconds(100)) {
    return;
  }
  if (new_stage && drawn_) {
    std::fputs("\n", stderr);
  }
  stage_ = stage;
  last_ = now;
  fraction = fraction < 0 ? 0 : (fraction > 1 ? 1 : fraction);
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '-');
  char head[96];
  std::snprintf(head, sizeof head, "%-24.24s [%s] %5.1f%%", stage.c_str(), bar.c_str(),
                fraction * 100.0);
  const std::string line = std::string(head) + (detail.empty() ? "" : "  ") + detail;
  // Cut to the terminal's width: a line that wraps cannot be redrawn in place with '\r'.
  std::fprintf(stderr, "\r%s\033[K", fitToWidth(line, terminalColumns()).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (enabled_ && drawn_) {
    std::fputs("\n", stderr);
    drawn_ = false;
  }
}

// "name: 42% (6/14 MiB)" on stderr, rewritten in place on a terminal, every 25% otherwise.
agent::AgentClient::UploadProgress uploadProgress(const std::string& name) {
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  return [name, tty, last = -1](uint64_t sent, uint64_t total) mutable {
    const int pct = total == 0 ? 100 : static_cast<int>(sent * 100 / total);
    if (pct == last || (!tty && pct / 25 == last / 25 && pct != 100)) {
      return;
    }
    last = pct;
    std::cerr << (tty ? "\r" : "") << "uploading " << name << ": " << pct << "% (" << (sent >> 20)
              << "/" << (total >> 20) << " MiB)" << (!tty || pct == 100 ? "\n" : "") << std::flush;
  };
}

}  // namespace vandra::cli

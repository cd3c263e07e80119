// Runs the vandra CLI with --json and reads its output: one JSON object per line (the bench
// commands' rows). Shared by the bench tests.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "vandra/common/subprocess.h"

namespace vandra::test {

struct CliJsonRun {
  bool exited_ok = false;
  std::string report;  // exit code, stdout and stderr: for a failure's message
  std::vector<nlohmann::json> rows;
};

/// Runs @p argv to its end. A line that is not a JSON object is a test failure (and ends the
/// rows there).
inline CliJsonRun runCliJsonLines(const std::vector<std::string>& argv) {
  CliJsonRun run;
  auto p = Subprocess::start(argv, {.capture_stdout = true, .capture_stderr = true});
  if (!p) {
    ADD_FAILURE() << p.error().describe();
    return run;
  }
  std::string out;
  EXPECT_TRUE(p->drainStdout([&](std::string_view c) { out.append(c); }));
  auto st = p->wait();
  EXPECT_TRUE(st) << (st ? "" : st.error().describe());
  run.exited_ok = st && st->ok();
  run.report = "exit " + std::to_string(st ? st->code : -1) + "\n" + out + p->stderrText();
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) {
      ADD_FAILURE() << "not a JSON object: " << line;
      break;
    }
    run.rows.push_back(std::move(j));
  }
  return run;
}

}  // namespace vandra::test

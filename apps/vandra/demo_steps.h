// The demos' steps: each runs, is timed and printed as it ends ("[ok]   name: detail" or
// "[FAIL] ..."); at the end one line, or with --json one object with every step and the facts
// the demo gathered.
#pragma once

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cli_support.h"
#include "migration_summary.h"
#include "vandra/common/result.h"

namespace vandra::cli {

class DemoSteps {
 public:
  explicit DemoSteps(bool as_json) : json_(as_json), bar_(!as_json) {}

  /// Runs @p f (returning Result<std::string>: the detail) as the step @p name.
  template <class F>
  bool step(const std::string& name, F&& f) {
    const auto start = std::chrono::steady_clock::now();
    Result<std::string> r = std::forward<F>(f)();
    bar_.finish();
    Step s{name, r.has_value(),
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
           r ? *r : r.error().describe()};
    if (!json_) {
      std::cout << (s.ok ? "[ok]   " : "[FAIL] ") << name << ": " << s.detail << "\n" << std::flush;
    }
    steps_.push_back(std::move(s));
    return r.has_value();
  }

  /// A line of the story between steps (not in --json).
  void say(const std::string& line) const {
    if (!json_) {
      std::cout << "       " << line << "\n" << std::flush;
    }
  }

  ProgressBar& bar() { return bar_; }
  bool json() const { return json_; }

  /// The last line, or the JSON object: result ("ok" or the first failed step with its
  /// detail), total_s, steps, and @p facts. @p note follows the human line.
  void finish(bool ok, std::chrono::steady_clock::time_point started, const nlohmann::json& facts,
              const std::string& note = "") const {
    const double total =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!json_) {
      std::cout << (ok ? "demo: ok" : "demo: FAILED") << " in " << formatSeconds(total) << note
                << "\n";
      return;
    }
    nlohmann::json steps = nlohmann::json::array();
    std::string failure;
    for (const auto& st : steps_) {
      steps.push_back(
          {{"step", st.name}, {"ok", st.ok}, {"seconds", st.seconds}, {"detail", st.detail}});
      if (!st.ok && failure.empty()) {
        failure = st.name + ": " + st.detail;
      }
    }
    nlohmann::json out = {{"result", ok                ? "ok"
                                     : failure.empty() ? "failed"
                                                       : failure},
                          {"total_s", total},
                          {"steps", steps}};
    out.update(facts);
    std::cout << out.dump(2) << "\n";
  }

 private:
  struct Step {
    std::string name;
    bool ok = false;
    double seconds = 0;
    std::string detail;
  };
  bool json_;
  ProgressBar bar_;
  std::vector<Step> steps_;
};

}  // namespace vandra::cli

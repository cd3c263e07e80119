// What a test does when this machine cannot run it (no root, no QEMU, no /dev/net/tun, no
// built guest): on a developer's machine it skips, saying why; in CI (CI=true) it fails, so a
// green CI run means the integration, end-to-end and fault tests really ran
// (docs/testing.md, "Skips").
//
//   if (!haveQemu()) { VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 not installed"); }
//
// Like GTEST_SKIP and GTEST_FAIL it returns from the current function: use it in the test
// body or a void fixture method (then check IsSkipped()/HasFatalFailure() in the caller).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string_view>

namespace vandra::testing {

/// True when the tests run in CI (the CI runner sets CI=true), where nothing may be skipped
/// for want of the environment.
inline bool inCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}

}  // namespace vandra::testing

#define VANDRA_SKIP_OR_FAIL(why)                                                  \
  do {                                                                            \
    if (::vandra::testing::inCi()) {                                              \
      GTEST_FAIL() << "cannot run here, and CI=true forbids skipping: " << (why); \
    } else {                                                                      \
      GTEST_SKIP() << (why);                                                      \
    }                                                                             \
  } while (false)

#include "vandra/common/error.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "vandra/common/result.h"

namespace vandra {
namespace {

Result<int> half(int x) {
  if (x % 2 != 0) {
    return fail(ErrorCode::InvalidArgument, "Odd value " + std::to_string(x));
  }
  return x / 2;
}

Result<int> quarter(int x) {
  VANDRA_TRY_ASSIGN(const int h, half(x));
  VANDRA_TRY_ASSIGN(const int q, half(h));
  return q;
}

TEST(ResultTest, PropagatesFirstError) {
  EXPECT_EQ(quarter(8).value(), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(r.error().message, "Odd value 3");
}

TEST(ErrorTest, DescribeIncludesLineErrnoAndCause) {
  errno = ENOENT;
  Error e = Error::fromErrno("Cannot open 'x'");
  EXPECT_EQ(e.code, ErrorCode::NotFound);
  Error outer = Error(ErrorCode::OvfInvalid, "Bad package").atLine(7);
  outer = std::move(outer).withCause(e);
  const std::string d = outer.describe();
  EXPECT_NE(d.find("Bad package (line 7)"), std::string::npos) << d;
  EXPECT_NE(d.find("Cannot open 'x'"), std::string::npos) << d;
  EXPECT_NE(d.find("No such file"), std::string::npos) << d;
}

TEST(ErrorTest, EveryCodeHasAName) {
  for (uint16_t c = 0; c < 200; ++c) {
    const auto name = toString(static_cast<ErrorCode>(c));
    // Unknown values map to "unknown"; known ones never do.
    if (name != "unknown") {
      EXPECT_FALSE(name.empty());
    }
  }
  EXPECT_EQ(toString(ErrorCode::ManifestMismatch), "manifest_mismatch");
}

}  // namespace
}  // namespace vandra

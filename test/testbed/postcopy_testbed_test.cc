// Post-copy on the real system (ADR 0032): a VM whose SLA allows it, with a guest that dirties
// its RAM faster than the link carries it, finishes in post-copy instead of being given up,
// and the WAN cut in the middle of the post-copy is survived: the stalled stream is paused at
// both ends and recovered over a new one once the link is back. The same guest without the
// clause is given up (testbed_fault_test.cc, RamThatCannotConvergeIsGivenUpWithTheRates).
#include "testbed_migration.h"

namespace vandra::testbed {
namespace {

TEST_F(TestbedMigration, PostCopyTheSlaAllowsFinishesAndSurvivesAWanCut) {
  StateDir work;
  const std::string id = postCopyFrom(work.path());
  if (IsSkipped() || HasFailure()) {
    return;
  }
  // Cut the WAN until the source has seen the stream stall (its RAM counter stands still) and
  // paused its end.
  ASSERT_TRUE(cutWan(tb_.state_dir, true));
  auto restore = defer([&] { (void)cutWan(tb_.state_dir, false); });
  std::string status;
  nlohmann::json seen;
  for (int i = 0; i < 300; ++i) {
    auto m = dc_->get("/v1/migrations/" + id + "?wait_ms=200");
    ASSERT_TRUE(m) << m.error().describe();
    seen = *m;
    status = (*m)["report"].value("post_copy", nlohmann::json::object()).value("status", "");
    if (status == "recovering" || status == "postcopy-paused" || status == "completed" ||
        (*m)["ended"].get<bool>()) {
      break;
    }
  }
  ASSERT_TRUE(status == "recovering" || status == "postcopy-paused")
      << "the post-copy was not seen to stall under the cut: " << seen.dump(2);
  ASSERT_TRUE(cutWan(tb_.state_dir, false));
  restore.dismiss();
  expectPostCopyRecovered(id);
}

// The source's agent dies in the middle of the post-copy (its tunnel, and the migration stream
// with it, go): QEMU at both sites pauses, and the agent started again finds the source QEMU in
// post-copy, recovers the stream and sends the rest before it releases anything.
TEST_F(TestbedMigration, PostCopySurvivesTheSourceAgentsRestart) {
  StateDir work;
  const std::string id = postCopyFrom(work.path());
  if (IsSkipped() || HasFailure()) {
    return;
  }
  auto again = restartAgent(tb_.state_dir, "dc", /*crash=*/true);
  ASSERT_TRUE(again) << again.error().describe();
  dc_.emplace(clientFor(*tb_.site("dc"), *tb_.site("dc")));
  expectPostCopyRecovered(id);
}

}  // namespace
}  // namespace vandra::testbed

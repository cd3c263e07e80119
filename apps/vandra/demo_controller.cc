// `vandra demo`: the whole story through the controller, as an operator would tell it.
//
//   testbed up: dc (EU, SE; small; home), cloud-eu (EU, DE), cloud-us (US, cheapest), an
//   emulated WAN between each pair, an agent per site and the controller over them
//     │
//   import through the controller, both at dc: web1 (the test guest: SLA EU only, automatic)
//   and batch1 (the same appliance, its own address, no jurisdiction limits, automatic)
//     │ a client at dc holds a TCP session with web1; web1 writes memory and disk all along
//   move by request (the console's button): web1 → cloud-eu, and back    (mobility paused)
//     │
//   pressure at dc (its high water mark lowered) ──► the controller moves them by itself:
//   web1 to cloud-eu (EU; never cloud-us, though cheaper), batch1 to the cheapest with room
//     │
//   pressure ends ──► they come home to dc
//     │
//   every move with its reason and its interruption against the SLA budget; the client's
//   session, the guest's memory and disk checks; the SLA status. --json: moves, sla_violations
#include "demo_controller.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <thread>

#include "demo_steps.h"
#include "migrate_watch.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/scope_guard.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/ovf/writer.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/guest_workload.h"
#include "vandra/testbed/testbed.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kWeb = "web1";
constexpr const char* kBatch = "batch1";
constexpr const char* kWebIp = "10.10.0.10";
constexpr const char* kBatchIp = "10.10.0.11";
constexpr double kPressureHigh = 0.2;  // dc's high water mark under pressure
constexpr double kPressureLow = 0.1;

// The test guest's boot disk names its address in syslinux.cfg (guest/build.sh); the second
// appliance gets its own by rewriting those bytes in a copy (same length, plain text on FAT).
Result<void> readdress(const std::string& boot_raw, const std::string& out) {
  std::ifstream in(boot_raw, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string from = std::string("vandra.ip=") + kWebIp + "/";
  const std::string to = std::string("vandra.ip=") + kBatchIp + "/";
  const size_t at = bytes.find(from);
  if (at == std::string::npos || bytes.find(from, at + 1) != std::string::npos) {
    return fail(ErrorCode::InvalidArgument,
                "The guest's boot disk " + boot_raw + " does not name " + kWebIp + " once");
  }
  bytes.replace(at, to.size(), to);
  std::ofstream(out, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<long>(bytes.size()));
  return {};
}

// The second appliance: the test guest with its own address and an SLA without
// jurisdiction limits, exported as an OVA by vandra's writer.
Result<std::string> secondAppliance(const std::string& guest_dir, const std::string& dir) {
  std::ifstream in(guest_dir + "/vmspec.json");
  const json j = json::parse(in, nullptr, false);
  VANDRA_TRY_ASSIGN(ovf::VmSpec spec, ovf::vmSpecFromJson(j));
  if (spec.virtual_systems.empty()) {
    return fail(ErrorCode::InvalidArgument, "The guest's vmspec.json has no virtual system");
  }
  auto& vs = spec.virtual_systems.front();
  vs.id = kBatch;
  vs.name = kBatch;
  ovf::Sla sla;
  sla.downtime_budget_ms = 1000;
  sla.mobility = ovf::Mobility::Automatic;
  vs.sla = sla;
  const std::string boot = dir + "/batch1-boot.raw";
  VANDRA_TRY(readdress(guest_dir + "/boot.raw", boot));
  ovf::ExportOptions eo;
  eo.disk_images["disk1"] = boot;
  eo.disk_images["disk2"] = guest_dir + "/disk2.raw";
  const std::string ova = dir + "/batch1.ova";
  VANDRA_TRY(ovf::exportPackage(spec, ova, eo));
  fs::remove(boot);
  return ova;
}

// "EU only, automatic, budget 1000 ms" from the SLA's JSON.
std::string slaLine(const json& sla) {
  std::string where = "any jurisdiction";
  if (sla.contains("jurisdictions") && sla["jurisdictions"].is_array() &&
      !sla["jurisdictions"].empty()) {
    where.clear();
    for (const auto& j : sla["jurisdictions"]) {
      where += (where.empty() ? "" : ", ") + j.get<std::string>();
    }
    where += " only";
  }
  return where + ", " + sla.value("mobility", "?") + ", downtime budget " +
         (sla["downtime_budget_ms"].is_number()
              ? std::to_string(sla["downtime_budget_ms"].get<int64_t>()) + " ms"
              : std::string("none"));
}

std::string fmtMs(const json& v) {
  return v.is_number() ? std::to_string(static_cast<int64_t>(v.get<double>())) + " ms" : "?";
}

class ControllerDemo {
 public:
  ControllerDemo(bool as_json, std::string dir, ControllerDemoOptions o)
      : s_(as_json), dir_(std::move(dir)), o_(std::move(o)) {}

  int run() {
    const auto started = Clock::now();
    auto teardown = defer([&] {
      if (!o_.keep && tb_) {
        cleanUp();
      }
    });
    bool ok =
        s_.step("test guest package", [&] { return inspectGuest(); }) &&
        s_.step(
            "testbed up: dc, cloud-eu, cloud-us and the controller (profile " + o_.profile + ")",
            [&] { return up(); }) &&
        s_.step("second appliance (same guest, own address, no jurisdiction limits)",
                [&]() -> Result<std::string> {
                  VANDRA_TRY_ASSIGN(batch_ova_, secondAppliance(o_.guest_dir, dir_));
                  return batch_ova_ + " (" + kBatchIp + ", SLA: any jurisdiction, automatic)";
                }) &&
        s_.step("packages up to the controller", [&] { return uploadBoth(); }) &&
        s_.step("import web1 at dc and start it", [&] { return importAt(kWeb, guest_pkg_); }) &&
        s_.step("import batch1 at dc and start it", [&] { return importAt(kBatch, batch_pkg_); }) &&
        s_.step("guests answer a client at dc", [&] { return guestsAnswer(); }) &&
        s_.step("web1 writes memory and disk; a client at dc holds a TCP session",
                [&] { return startWorkload(); }) &&
        s_.step("mobility paused for the requested moves",
                [&] {
                  return send("POST", "/v1/mobility/pause", {{"reason", "demo: moves by request"}},
                              "paused");
                }) &&
        s_.step("move by request: web1 to cloud-eu",
                [&] { return requestMove(kWeb, "cloud-eu", "demo: the button"); }) &&
        s_.step("move by request: web1 back to dc",
                [&] { return requestMove(kWeb, "dc", "demo: and back"); }) &&
        s_.step("pressure at dc: its high water mark lowered to 20%",
                [&] { return pressure(true); }) &&
        s_.step("the controller moves them by itself", [&] { return wander(); }) &&
        s_.step("pressure ends: dc's water marks back to 85% / 60%",
                [&] { return pressure(false); }) &&
        s_.step("they come home", [&] { return comeHome(); });
    // The session and the data are checked whatever happened, if they were started.
    ok = s_.step("client's TCP session intact", [&] { return sessionIntact(); }) && ok;
    ok = s_.step("memory and disk checks in web1", [&] { return dataChecks(); }) && ok;
    ok = s_.step("SLA status and budgets", [&] { return slaVerdicts(); }) && ok;
    if (!o_.keep) {
      teardown.dismiss();
      ok = s_.step("clean up", [&] { return cleanUp(); }) && ok;
    }
    facts_["moves"] = moves_;
    for (const char* k :
         {"memory_check", "disk_check", "client_max_gap_ms", "tcp_bytes_lost", "sla_violations"}) {
      if (!facts_.contains(k)) {
        facts_[k] = nullptr;
      }
    }
    std::string kept;
    if (o_.keep && tb_) {
      kept = " (testbed kept: vandra testbed down --state-dir " + dir_ + "/testbed; controller " +
             tb_->controller_endpoint +
             (tb_->console_url.empty()
                  ? std::string()
                  : "; web console " + tb_->console_url + ", users in " + tb_->console_users) +
             ")";
    }
    s_.finish(ok, started, facts_, kept);
    return ok ? 0 : 1;
  }

 private:
  Result<std::string> inspectGuest() {
    const std::string ova = (fs::path(o_.guest_dir) / "test-guest.ova").string();
    VANDRA_TRY_ASSIGN(auto insp, ovf::inspectPackage(ova, {}));
    VANDRA_TRY(ovf::requireSound(insp));
    const auto& vs = insp.spec.virtual_systems.at(0);
    if (!vs.sla || vs.sla->jurisdictions != std::vector<std::string>{"EU"} ||
        vs.sla->mobility != ovf::Mobility::Automatic) {
      return fail(ErrorCode::SlaInvalid,
                  "The test guest's OVA must carry an SLA: EU only, automatic (guest/build.sh)");
    }
    guest_ova_ = ova;
    return ova + ": SLA EU only, automatic, downtime budget " +
           std::to_string(vs.sla->downtime_budget_ms.value_or(0)) + " ms";
  }

  Result<std::string> up() {
    testbed::TestbedOptions to;
    to.profile = o_.profile;
    to.state_dir = dir_ + "/testbed";
    to.agents = true;
    to.controller = true;
    // Short stays, so that the story fits in minutes (the default is 10 minutes).
    to.controller_args = {"--min-stay-s", "5"};
    to.console_dir = o_.console_dir;
    VANDRA_TRY_ASSIGN(tb_, testbed::up(to));
    agent::AgentEndpoint ep{.host = "",
                            .port = 0,
                            .ca = tb_->controller_ca,
                            .cert = tb_->operator_cert,
                            .key = tb_->operator_key,
                            .netns = "",
                            .epoch = 0,
                            .label = "controller"};
    VANDRA_TRY(agent::parseHostPort(tb_->controller_endpoint, ep));
    ctl_.emplace(ep);
    // The controller leads and has heard from every agent.
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    for (;;) {
      auto hosts = ctl_->get("/v1/hosts");
      size_t reachable = 0;
      if (hosts) {
        for (const auto& h : (*hosts)["hosts"]) {
          reachable += h.value("reachable", false) && h["capacity"].value("memory_mib", 0) > 0;
        }
      }
      auto leader = ctl_->get("/v1/leader");
      if (reachable == tb_->sites.size() && leader && (*leader).value("leader", false)) {
        break;
      }
      if (Clock::now() > deadline) {
        return fail(ErrorCode::Timeout, "The controller did not reach every agent in 60 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // polls the controller
    }
    facts_["testbed"] = {
        {"id", tb_->id}, {"state_dir", to.state_dir}, {"controller", tb_->controller_endpoint}};
    if (!tb_->console_url.empty()) {
      facts_["console"] = {{"url", tb_->console_url}, {"users", tb_->console_users}};
    }
    return (tb_->console_url.empty()
                ? std::string()
                : "web console " + tb_->console_url + " (users in " + tb_->console_users + "); ") +
           "controller " + tb_->controller_endpoint + " leads, agents at " +
           tb_->site("dc")->agent_endpoint + ", " + tb_->site("cloud-eu")->agent_endpoint + ", " +
           tb_->site("cloud-us")->agent_endpoint;
  }

  Result<std::string> uploadBoth() {
    guest_pkg_ = "test-guest.ova";
    batch_pkg_ = "batch1.ova";
    VANDRA_TRY(ctl_->uploadPackage(guest_ova_, guest_pkg_));
    VANDRA_TRY(ctl_->uploadPackage(batch_ova_, batch_pkg_));
    // What an operator reads before importing: the SLA, and where placement would put it.
    std::string out;
    for (const auto& p : {guest_pkg_, batch_pkg_}) {
      VANDRA_TRY_ASSIGN(const json info, ctl_->get("/v1/packages/" + p));
      const json& pl = info["placement"];
      out += (out.empty() ? "" : "; ") + p + ": placement would choose " +
             (pl.contains("site") ? pl["site"].get<std::string>()
                                  : pl["error"].value("message", "nowhere"));
    }
    return out + " (dc is named below: the VMs start at home)";
  }

  Result<std::string> importAt(const std::string& vm, const std::string& pkg) {
    VANDRA_TRY_ASSIGN(const json r, ctl_->post("/v1/vms",
                                               {{"id", vm},
                                                {"package", pkg},
                                                {"site", "dc"},
                                                {"start", true},
                                                {"reason", "demo: a new service at home"}},
                                               std::chrono::seconds(600)));
    const json& v = r["vm"];
    return vm + " " + v.value("state", "") + " at " + v.value("site", "") + " (" +
           v.value("host", "") + "), home " + v.value("home_site", "") +
           "; SLA: " + slaLine(v["sla"]);
  }

  Result<std::string> guestsAnswer() {
    const auto deadline = Clock::now() + std::chrono::seconds(300);
    VANDRA_TRY_ASSIGN(web_,
                      testbed::GuestConnection::connect(tb_->client_netns, kWebIp, 7000, deadline));
    VANDRA_TRY(web_->ping("boot", std::chrono::seconds(30)));
    VANDRA_TRY_ASSIGN(
        auto batch, testbed::GuestConnection::connect(tb_->client_netns, kBatchIp, 7000, deadline));
    VANDRA_TRY(batch.ping("boot", std::chrono::seconds(30)));
    return std::string("client ") + tb_->client_address + " reached " + kWebIp +
           ":7000 (web1) and " + kBatchIp + ":7000 (batch1)";
  }

  Result<std::string> startWorkload() {
    VANDRA_TRY_ASSIGN(auto m, web_->exec("vguest-mempat start 32 7", std::chrono::seconds(120)));
    if (m.exit_code != 0) {
      return fail(ErrorCode::Internal, "vguest-mempat start failed");
    }
    VANDRA_TRY_ASSIGN(
        auto d, web_->exec("vguest-diskpat write /dev/vdb 5 0 16", std::chrono::seconds(120)));
    if (d.exit_code != 0) {
      return fail(ErrorCode::Internal, "vguest-diskpat write failed");
    }
    testbed::WorkloadOptions wo;
    wo.dirty_wss_mib = 32;
    wo.dirty_rate_mbps = 20;
    VANDRA_TRY_ASSIGN(workload_, testbed::GuestWorkload::start(*web_, wo));
    VANDRA_TRY_ASSIGN(probe_, testbed::SessionProbe::start(
                                  tb_->client_netns, kWebIp, 7000, std::chrono::milliseconds(10),
                                  Clock::now() + std::chrono::seconds(30)));
    return std::string(
        "32 MiB memory pattern, 16 MiB disk pattern, dirtier at 20 MB/s, disk "
        "writer; client probes every 10 ms");
  }

  Result<std::string> send(const std::string& method, const std::string& path, const json& body,
                           const std::string& said) {
    VANDRA_TRY(method == "POST" ? ctl_->post(path, body) : ctl_->sendJson(method, path, body));
    return said;
  }

  // One ended migration as a line, and in `moves`.
  Result<std::string> record(const json& m) {
    moves_.push_back({{"vm", m["vm"]},
                      {"from", m["from"]},
                      {"to", m["to"]},
                      {"reason", m["reason"]},
                      {"why", m["why"]},
                      {"state", m["state"]},
                      {"interruption_ms", m["downtime_ms"]},
                      {"budget_ms", m["budget_ms"]},
                      {"within_budget", m["within_budget"]}});
    const std::string line =
        m.value("vm", "") + ": " + m.value("from", "") + " -> " + m.value("to", "") + " (" +
        m.value("reason", "") + ": " + m.value("why", "") + "), " + m.value("state", "") +
        ", interruption " + fmtMs(m["downtime_ms"]) + " of a " + fmtMs(m["budget_ms"]) + " budget" +
        (m["within_budget"].is_boolean() && !m["within_budget"].get<bool>() ? " (OVER)" : "");
    if (m.value("state", "") != "done") {
      return fail(ErrorCode::Io, line + ": " + m.value("error", ""));
    }
    return line;
  }

  Result<std::string> requestMove(const std::string& vm, const std::string& to,
                                  const std::string& why) {
    VANDRA_TRY_ASSIGN(const json begun,
                      ctl_->post("/v1/vms/" + vm + "/migrate", {{"to", to}, {"reason", why}}));
    seen_.insert(begun.value("id", int64_t{0}));
    VANDRA_TRY_ASSIGN(const json m,
                      followControllerMigration(*ctl_, begun.value("id", int64_t{0}), s_.bar(),
                                                Clock::now() + std::chrono::minutes(15)));
    return record(m);
  }

  Result<std::string> pressure(bool on) {
    const json marks = on ? json{{"high", kPressureHigh}, {"low", kPressureLow}}
                          : json{{"high", 0.85}, {"low", 0.6}};
    VANDRA_TRY(ctl_->sendJson("PATCH", "/v1/sites/dc", {{"water_marks", marks}}));
    if (on) {
      VANDRA_TRY(ctl_->post("/v1/mobility/resume", {{"reason", "demo: let them wander"}}));
      VANDRA_TRY_ASSIGN(const json plan, ctl_->get("/v1/mobility"));
      std::string said;
      for (const auto& mv : plan["plan"]["moves"]) {
        said += (said.empty() ? "" : "; ") + mv.value("vm", "") + " -> " + mv.value("to", "") +
                " (" + mv.value("why", "") + ")";
      }
      return "the plan: " + (said.empty() ? std::string("nothing yet") : said);
    }
    return std::string("dc may hold them again");
  }

  // Waits until every VM of @p vms has ended a migration by vandra (not one of seen_) that
  // left it at a site where @p arrived holds; records each. Fails on a failed move.
  Result<std::string> movesByVandra(
      const std::vector<std::string>& vms,
      const std::function<bool(const std::string&, const std::string&)>& arrived) {
    const auto deadline = Clock::now() + std::chrono::minutes(15);
    std::set<std::string> done;
    std::string said;
    while (done.size() < vms.size()) {
      if (Clock::now() > deadline) {
        return fail(ErrorCode::Timeout, "Not every VM moved in 15 minutes: " + said);
      }
      VANDRA_TRY_ASSIGN(const json all, ctl_->get("/v1/migrations?max=50"));
      // Newest first from the controller; told oldest first, so that two moves of one VM that
      // ended between two polls are told in the order they happened.
      std::vector<json> ended(all["migrations"].begin(), all["migrations"].end());
      std::sort(ended.begin(), ended.end(), [](const json& a, const json& b) {
        return a.value("id", int64_t{0}) < b.value("id", int64_t{0});
      });
      for (const auto& m : ended) {
        const int64_t id = m.value("id", int64_t{0});
        if (seen_.contains(id) || m.value("state", "") == "running") {
          continue;
        }
        seen_.insert(id);
        VANDRA_TRY_ASSIGN(const std::string line, record(m));
        s_.say(line);
        said += (said.empty() ? "" : "; ") + line;
        if (arrived(m.value("vm", ""), m.value("to", ""))) {
          done.insert(m.value("vm", ""));
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // polls the controller
    }
    return said;
  }

  Result<std::string> wander() {
    VANDRA_TRY_ASSIGN(const std::string said,
                      movesByVandra({kWeb, kBatch}, [](const std::string&, const std::string& to) {
                        return to != "dc";
                      }));
    for (const auto& m : moves_) {
      if (m["vm"] == kWeb && m["to"] == "cloud-us") {
        return fail(ErrorCode::SlaViolated, "web1 (EU only) was moved to cloud-us");
      }
    }
    return said;
  }

  Result<std::string> comeHome() {
    return movesByVandra({kWeb, kBatch},
                         [](const std::string&, const std::string& to) { return to == "dc"; });
  }

  Result<std::string> sessionIntact() {
    if (!probe_) {
      return fail(ErrorCode::IllegalTransition, "The session was never started");
    }
    const auto r = probe_->stop();
    facts_["client_max_gap_ms"] = r.max_gap_ms;
    facts_["tcp_bytes_lost"] = r.bytes_lost;
    if (!r.error.empty() || r.bytes_lost != 0 || r.answers != r.probes_sent) {
      return fail(ErrorCode::Io, "The session lost bytes: " +
                                     (r.error.empty() ? std::to_string(r.bytes_lost) : r.error));
    }
    return std::to_string(r.probes_sent) + " probes through " + std::to_string(moves_.size()) +
           " moves, every byte back in order; longest gap " + formatMs(r.max_gap_ms);
  }

  Result<std::string> dataChecks() {
    if (!workload_) {
      return fail(ErrorCode::IllegalTransition, "The workload was never started");
    }
    VANDRA_TRY_ASSIGN(auto m, web_->exec("vguest-mempat check", std::chrono::seconds(120)));
    VANDRA_TRY_ASSIGN(
        auto d, web_->exec("vguest-diskpat check /dev/vdb 5 0 16", std::chrono::seconds(120)));
    VANDRA_TRY_ASSIGN(const auto w, workload_->verify(*web_));
    const bool mem_ok =
        m.exit_code == 0 && !m.out.empty() && m.out.back().rfind("PASS", 0) == 0 && w.memory.pass;
    const bool disk_ok =
        d.exit_code == 0 && !d.out.empty() && d.out.back().rfind("PASS", 0) == 0 && w.disk.pass;
    facts_["memory_check"] = mem_ok ? "pass" : "fail";
    facts_["disk_check"] = disk_ok ? "pass" : "fail";
    const std::string said = (m.out.empty() ? "?" : m.out.back()) + "; " +
                             (d.out.empty() ? "?" : d.out.back()) + "; " + w.describe();
    if (!mem_ok || !disk_ok) {
      return fail(ErrorCode::Internal, "Check failed: " + said);
    }
    return said;
  }

  // Violations: a VM whose site breaks its SLA now, and every move over its downtime budget.
  Result<std::string> slaVerdicts() {
    if (!ctl_) {
      return fail(ErrorCode::IllegalTransition, "No controller");
    }
    VANDRA_TRY_ASSIGN(const json sla, ctl_->get("/v1/sla"));
    int64_t violations = sla.value("violations", int64_t{0});
    int64_t over = 0;
    for (const auto& m : moves_) {
      over += m["within_budget"].is_boolean() && !m["within_budget"].get<bool>();
    }
    facts_["sla_violations"] = violations + over;
    const std::string said = std::to_string(violations) + " VM(s) where their SLA forbids, " +
                             std::to_string(over) + " of " + std::to_string(moves_.size()) +
                             " moves over their downtime budget";
    if (violations + over != 0) {
      return fail(ErrorCode::SlaViolated, said);
    }
    return said;
  }

  Result<std::string> cleanUp() {
    if (!tb_) {
      return std::string("nothing was started");
    }
    web_.reset();
    probe_.reset();
    workload_.reset();
    // Each VM killed and deleted at the agent that runs it, then the testbed goes.
    for (const auto* vm : {kWeb, kBatch}) {
      auto v = ctl_ ? ctl_->get(std::string("/v1/vms/") + vm) : Result<json>(json());
      const testbed::SiteInfo* site =
          v && v->is_object() ? tb_->site(v->value("site", "")) : nullptr;
      if (site == nullptr) {
        continue;
      }
      agent::AgentEndpoint ep{.host = "",
                              .port = 0,
                              .ca = site->ca_cert,
                              .cert = site->operator_cert,
                              .key = site->operator_key,
                              .netns = site->netns,
                              .epoch = 0,
                              .label = "agent"};
      VANDRA_TRY(agent::parseHostPort(site->agent_endpoint, ep));
      agent::AgentClient a(ep);
      (void)a.post(std::string("/v1/vms/") + vm + "/kill", json::object());
      (void)a.del(std::string("/v1/vms/") + vm);
    }
    ctl_.reset();
    VANDRA_TRY(testbed::down(dir_ + "/testbed"));
    tb_.reset();
    return std::string("VMs deleted, testbed down: no namespace, process, tap or file left");
  }

  DemoSteps s_;
  std::string dir_;
  ControllerDemoOptions o_;
  std::optional<testbed::TestbedInfo> tb_;
  std::optional<agent::AgentClient> ctl_;
  std::string guest_ova_, batch_ova_, guest_pkg_, batch_pkg_;
  std::optional<testbed::GuestConnection> web_;
  std::optional<testbed::GuestWorkload> workload_;
  std::unique_ptr<testbed::SessionProbe> probe_;
  std::set<int64_t> seen_;  // migrations already told
  json moves_ = json::array();
  json facts_ = json::object();
};

}  // namespace

int runControllerDemo(bool as_json, const std::string& dir, const ControllerDemoOptions& o) {
  return ControllerDemo(as_json, dir, o).run();
}

}  // namespace vandra::cli

#include "vandra/agent/agent_service.h"

#include <openssl/evp.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "vandra/agent/qemu_process.h"
#include "vandra/agent/recovery.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/qemu/names.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::agent {
namespace {

Resources requestOf(const ovf::VirtualSystemSpec& vs) {
  Resources r{vs.vcpus, vs.memory_mib, 0};
  for (const auto& d : vs.disks) {
    r.disk_bytes += d.capacity_bytes;
  }
  return r;
}

const ovf::VirtualSystemSpec* pick(const ovf::VmSpec& spec, const std::string& vs) {
  for (const auto& v : spec.virtual_systems) {
    if (vs.empty() || v.id == vs) {
      return &v;
    }
  }
  return nullptr;
}

}  // namespace

nlohmann::json toJson(const Resources& r) {
  return {{"vcpus", r.vcpus}, {"memory_mib", r.memory_mib}, {"disk_bytes", r.disk_bytes}};
}

nlohmann::json toJson(const VmRecord& r) {
  auto spec = nlohmann::json::parse(r.spec_json, nullptr, false);
  // The host device of each NIC (its tap on the site bridge), in spec order: what a client of
  // the API (the demo, the bench, an operator's tooling) needs to find the VM on the LAN.
  nlohmann::json taps = nlohmann::json::array();
  if (!spec.is_discarded() && spec.contains("virtual_systems") &&
      spec["virtual_systems"].is_array() && !spec["virtual_systems"].empty() &&
      spec["virtual_systems"][0].contains("nics") &&
      spec["virtual_systems"][0]["nics"].is_array()) {
    for (size_t i = 0; i < spec["virtual_systems"][0]["nics"].size(); ++i) {
      taps.push_back(tapName(r.id, i));
    }
  }
  return {{"id", r.id},
          {"state", toString(r.state)},
          {"pid", r.pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(r.pid)},
          {"resources", toJson(Resources{r.vcpus, r.memory_mib, r.disk_bytes})},
          {"taps", taps},
          {"spec", spec.is_discarded() ? nlohmann::json(nullptr) : spec}};
}

Result<std::unique_ptr<AgentService>> AgentService::open(const AgentConfig& config) {
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create '" + config.state_dir + "': " + ec.message());
  }
  VANDRA_TRY_ASSIGN(auto registry, openSqliteRegistry(config.state_dir + "/registry.db"));
  VANDRA_TRY_ASSIGN(auto store, ImageStore::open(config.state_dir + "/images"));
  VANDRA_TRY_ASSIGN(auto uploads,
                    UploadStore::open(config.state_dir + "/uploads", config.max_upload_bytes));
  std::unique_ptr<AgentService> svc(new AgentService(config, std::move(registry), std::move(store),
                                                     std::move(uploads)));  // NOLINT: private
  // Exports a crash left half done are completed before any VM is looked at (ADR 0029).
  (void)svc->store_.completeExports(
      static_cast<int64_t>(::time(nullptr)) +
      std::chrono::duration_cast<std::chrono::seconds>(config.keep_exports).count());
  VANDRA_TRY(svc->recover());
  // Disks kept for moves back that expired while the agent was down (ADR 0027).
  (void)svc->store_.sweepRetained(static_cast<int64_t>(::time(nullptr)));
  return svc;
}

std::string tapName(const std::string& vm_id, size_t index) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(vm_id.data(), vm_id.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out = "vt";
  for (int i = 0; i < 4; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out + std::to_string(index);
}

VmRunPaths AgentService::runPaths(const std::string& id) const {
  const std::string dir = config_.state_dir + "/run/" + id;
  const qemu::RunFiles f = qemu::runFiles(dir);
  return {dir, f.qmp_socket, f.event_socket, f.serial_log, {}};
}

// Applies a lifecycle event and persists the new state (before the caller's side effect),
// then logs it.
Result<VmRecord> AgentService::move(VmRecord r, VmEvent event, const nlohmann::json& why) {
  const VmState from = r.state;
  VANDRA_TRY_ASSIGN(r.state, transition(r.state, event));
  VANDRA_TRY_ASSIGN(r, registry_->update(r));
  nlohmann::json data{{"from", toString(from)}, {"event", toString(event)}};
  if (why.is_object()) {
    data.update(why);
  }
  events_.append(r.id, "state", std::string(toString(r.state)), std::move(data));
  return r;
}

AgentService::~AgentService() {
  // QEMU keeps running: only the watchers go (a later agent re-attaches).
  std::map<std::string, std::unique_ptr<VmMonitor>> monitors;
  {
    std::lock_guard lock(monitors_mu_);
    monitors.swap(monitors_);
  }
  monitors.clear();
  events_.wakeAll();
}

std::timed_mutex& AgentService::opMutex(const std::string& id) {
  std::lock_guard lock(locks_mu_);
  auto& slot = op_locks_[id];
  if (!slot) {
    slot = std::make_unique<std::timed_mutex>();
  }
  return *slot;  // never erased: the reference stays valid
}

Result<std::unique_lock<std::timed_mutex>> AgentService::lockVm(const std::string& id) {
  // A request that is just finishing (its answer or event already out) is waited for
  // briefly; one that runs on (a stop, a migration) makes this one busy.
  std::unique_lock<std::timed_mutex> held(opMutex(id), kLockPatience);
  if (!held.owns_lock()) {
    return fail(ErrorCode::Busy,
                "VM '" + id + "' is busy with another request; try again when it ends");
  }
  return held;
}

void AgentService::watch(const VmRecord& r) {
  auto m = VmMonitor::start(
      r.id, {r.pid, r.pid_start_time}, runPaths(r.id).event_socket, events_,
      [this](const std::string& vm, const std::string& reason, const std::atomic<bool>& cancelled) {
        onQemuExit(vm, reason, cancelled);
      });
  std::unique_ptr<VmMonitor> old;
  {
    std::lock_guard lock(monitors_mu_);
    old = std::exchange(monitors_[r.id], std::move(m));
  }
  // `old` (a finished watcher of an earlier run) is joined here, outside the lock.
}

void AgentService::unwatch(const std::string& id) {
  std::unique_ptr<VmMonitor> old;
  {
    std::lock_guard lock(monitors_mu_);
    auto it = monitors_.find(id);
    if (it == monitors_.end()) {
      return;
    }
    old = std::move(it->second);
    monitors_.erase(it);
  }
}

// On the monitor's thread: QEMU exited without the agent asking. A request that holds the
// VM's lock (stop, kill) accounts for the exit itself; otherwise record it. The lock is tried,
// not waited for, so unwatch() from that request never waits for this thread in turn.
void AgentService::onQemuExit(const std::string& id, const std::string& reason,
                              const std::atomic<bool>& cancelled) {
  std::timed_mutex& m = opMutex(id);
  while (!cancelled) {
    // Another request on this VM ends within the stop timeout; re-check `cancelled` meanwhile.
    std::unique_lock<std::timed_mutex> held(m, std::chrono::milliseconds(50));
    if (held.owns_lock()) {
      auto r = registry_->get(id);
      if (r && *r && (*r)->state == VmState::Running) {
        VmRecord rec = **r;
        // The pidfd said it exited; a zombie nobody reaped yet counts as gone.
        if (rec.pid == 0 || !observeProcess(rec.pid, rec.pid_start_time).alive) {
          rec.pid = 0;
          rec.pid_start_time = 0;
          // A guest that powered itself off is stopped as if asked (running -> stopping ->
          // stopped); any other exit is a failure (running -> failed).
          if (reason == "guest-shutdown") {
            if (auto s1 = move(rec, VmEvent::Stop, {{"reason", reason}}); s1) {
              rec = *s1;
            }
          }
          (void)move(rec, VmEvent::QemuExited, {{"reason", reason}});
        }
      }
      return;
    }
  }
}

Result<std::vector<std::pair<std::string, RecoveryAction>>> AgentService::recover() {
  std::vector<std::pair<std::string, RecoveryAction>> done;
  VANDRA_TRY_ASSIGN(const auto all, registry_->list());
  for (VmRecord r : all) {
    const RecoveryAction a = recoveryFor(r.state, observeProcess(r.pid, r.pid_start_time));
    done.emplace_back(r.id, a);
    switch (a) {
      case RecoveryAction::Nothing:
        break;
      case RecoveryAction::Reattach:  // QEMU kept running while we were away: keep it
        events_.append(r.id, "state", "reattached", {{"pid", r.pid}});
        watch(r);
        break;
      case RecoveryAction::MarkFailed:
      case RecoveryAction::MarkStopped:
        r.state = a == RecoveryAction::MarkFailed ? VmState::Failed : VmState::Stopped;
        r.pid = 0;
        r.pid_start_time = 0;
        VANDRA_TRY(registry_->update(r));
        break;
      case RecoveryAction::ResumeStop: {
        VANDRA_TRY(signalProcess({r.pid, r.pid_start_time}, SIGKILL));
        VANDRA_TRY(waitForExit({r.pid, r.pid_start_time}, std::chrono::seconds(10)));
        r.state = VmState::Stopped;
        r.pid = 0;
        r.pid_start_time = 0;
        VANDRA_TRY(registry_->update(r));
        break;
      }
      case RecoveryAction::KillThenDelete:
        VANDRA_TRY(signalProcess({r.pid, r.pid_start_time}, SIGKILL));
        VANDRA_TRY(waitForExit({r.pid, r.pid_start_time}, std::chrono::seconds(10)));
        [[fallthrough]];
      case RecoveryAction::FinishDelete:
        VANDRA_TRY(store_.removeVm(r.id));
        VANDRA_TRY(registry_->remove(r.id));
        break;
    }
  }
  return done;
}

Result<VmRecord> AgentService::startVm(const std::string& id) {
  if (!config_.command_line) {
    return fail(ErrorCode::Unsupported,
                "This agent was started without a QEMU command-line builder");
  }
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  VANDRA_TRY_ASSIGN(r, move(r, VmEvent::Start));  // Starting is on disk before QEMU exists
  auto failed = [&](Error e) -> Result<VmRecord> {
    if (auto current = registry_->get(id); current && *current) {
      r = **current;  // launch() may have recorded a pid before it failed
    }
    if (r.pid != 0) {
      (void)signalProcess({r.pid, r.pid_start_time}, SIGKILL);
      (void)waitForExit({r.pid, r.pid_start_time}, std::chrono::seconds(10));
    }
    unwatch(id);
    r.pid = 0;
    r.pid_start_time = 0;
    if (auto m = move(r, VmEvent::StartFailed, {{"error", e.describe()}}); !m) {
      e.secondary.push_back(m.error());
    }
    return fail(std::move(e));
  };
  const auto j = nlohmann::json::parse(r.spec_json, nullptr, false);
  auto spec = j.is_discarded()
                  ? Result<ovf::VmSpec>(fail(ErrorCode::Internal, "Stored spec is not JSON"))
                  : ovf::vmSpecFromJson(j);
  if (!spec || spec->virtual_systems.empty()) {
    return failed(spec ? Error(ErrorCode::Internal, "Stored spec has no virtual system")
                       : spec.error());
  }
  const auto& vs = spec->virtual_systems.front();
  if (auto up = launch(r, vs, false); !up) {
    return failed(up.error());
  } else {
    r = *up;
  }
  const VmRunPaths paths = runPaths(id);
  auto qmp = qmp::connectQmp(paths.qmp_socket, {});
  if (!qmp) {
    return failed(qmp.error());
  }
  // What the command line cannot say (a NIC whose cable is unplugged) is set before the guest
  // runs; the builder starts QEMU paused (-S) whenever there is something to set.
  for (const auto& c : qemu::startupQmpCommands(vs)) {
    if (auto done = (*qmp)->execute(qmp::makeCommand(c.name, c.args)); !done) {
      return failed(done.error());
    }
  }
  auto status = (*qmp)->execute(qmp::makeCommand("query-status"));
  if (!status) {
    return failed(status.error());
  }
  if (status->value("status", "") != "running") {
    // Started paused (-S or -incoming): the guest runs once QEMU is told to continue.
    if (auto c = (*qmp)->execute(qmp::makeCommand("cont")); !c) {
      return failed(c.error());
    }
  }
  return move(r, VmEvent::QemuUp);
}

// Builds the command line, launches QEMU daemonized, records its pid (registry first: a crash
// from here on is recoverable), starts the VM's monitor and joins its taps to the bridge.
// On failure the returned error leaves r.pid in the registry for the caller's clean-up.
Result<VmRecord> AgentService::launch(VmRecord r, const ovf::VirtualSystemSpec& vs, bool incoming) {
  std::vector<VmDisk> disks;
  for (const auto& d : vs.disks) {
    disks.push_back(
        {d.id, store_.root() + "/vms/" + r.id + "/" + d.id + ".qcow2", d.capacity_bytes});
  }
  VmRunPaths paths = runPaths(r.id);
  paths.incoming = incoming;
  for (size_t i = 0; i < vs.nics.size(); ++i) {
    paths.taps.push_back(tapName(r.id, i));
  }
  std::error_code ec;
  std::filesystem::create_directories(paths.dir, ec);
  VANDRA_TRY_ASSIGN(const auto argv, config_.command_line(vs, disks, paths));
  VANDRA_TRY_ASSIGN(const QemuPid launched, launchDaemonized(argv, paths.dir));
  r.pid = launched.pid;
  r.pid_start_time = launched.start_time;
  auto saved = registry_->update(r);
  if (!saved) {
    (void)signalProcess(launched, SIGKILL);
    (void)waitForExit(launched, std::chrono::seconds(10));
    return fail(saved.error());
  }
  r = *saved;
  watch(r);  // events from the first instant
  if (!config_.bridge.empty()) {
    for (const auto& tap : paths.taps) {
      if (auto up = runCapture({"ip", "link", "set", tap, "master", config_.bridge, "up"}); !up) {
        return fail(up.error());
      }
    }
  }
  return r;
}

Result<VmRecord> AgentService::stopVm(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  VANDRA_TRY_ASSIGN(r, move(r, VmEvent::Stop));
  const QemuPid p{r.pid, r.pid_start_time};
  // ACPI first: a guest that listens shuts down cleanly; one that does not is forced.
  if (auto qmp = qmp::connectQmp(runPaths(id).qmp_socket, {}); qmp) {
    (void)(*qmp)->execute(qmp::makeCommand("system_powerdown"));
  }
  if (auto w = waitForExit(p, config_.stop_timeout); !w) {
    VANDRA_TRY(signalProcess(p, SIGKILL));
    VANDRA_TRY(waitForExit(p, std::chrono::seconds(10)));
  }
  unwatch(id);
  r.pid = 0;
  r.pid_start_time = 0;
  return move(r, VmEvent::QemuExited, {{"reason", "stop"}});
}

Result<VmRecord> AgentService::killVm(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  VANDRA_TRY(transition(r.state, VmEvent::Kill));  // refuse before doing anything
  const QemuPid p{r.pid, r.pid_start_time};
  VANDRA_TRY(signalProcess(p, SIGKILL));
  VANDRA_TRY(waitForExit(p, std::chrono::seconds(10)));
  unwatch(id);
  r.pid = 0;
  r.pid_start_time = 0;
  return move(r, VmEvent::Kill, {{"reason", "kill"}});
}

Result<std::string> AgentService::console(const std::string& id, size_t max_bytes) {
  VANDRA_TRY(get(id));
  std::ifstream in(runPaths(id).serial_log, std::ios::binary | std::ios::ate);
  if (!in) {
    return std::string();
  }
  const auto size = static_cast<size_t>(in.tellg());
  const size_t n = std::min(size, max_bytes);
  in.seekg(static_cast<std::streamoff>(size - n));
  std::string out(n, '\0');
  in.read(out.data(), static_cast<std::streamsize>(n));
  return out;
}

Result<Resources> AgentService::inUse() {
  VANDRA_TRY_ASSIGN(const auto all, registry_->list());
  std::vector<Resources> rs;
  for (const auto& r : all) {
    rs.push_back({r.vcpus, r.memory_mib, r.disk_bytes});
  }
  return used(rs);
}

namespace {
// The library names the file it was given (/proc/self/fd/N): say the package's path instead.
Error naming(Error e, const std::string& from, const std::string& to) {
  for (size_t at = e.message.find(from); at != std::string::npos;
       at = e.message.find(from, at + to.size())) {
    e.message.replace(at, from.size(), to);
  }
  for (auto& s : e.secondary) {
    s = naming(std::move(s), from, to);
  }
  return e;
}
}  // namespace

Result<VmRecord> AgentService::importVm(const ImportRequest& req) {
  if (!validVmId(req.id)) {
    return fail(ErrorCode::InvalidArgument,
                "VM id '" + req.id + "' must be 1..64 characters of A-Z a-z 0-9 - _ .");
  }
  if (!req.upload.empty() && !validUploadName(req.upload)) {
    return fail(ErrorCode::InvalidArgument, "Bad upload name '" + req.upload.substr(0, 200) + "'");
  }
  if (!req.upload.empty() && !req.package.empty()) {
    return fail(ErrorCode::InvalidArgument, "Name either a package path or an upload, not both");
  }
  VANDRA_TRY_ASSIGN(
      const OpenedPackage pkg,
      openImportPackage(req.upload.empty() ? req.package : uploads_.dir() + "/" + req.upload,
                        importDirs()));
  {
    std::lock_guard lock(importing_mu_);
    importing_.insert(pkg.canonical);
  }
  auto done = defer([&] {
    std::lock_guard lock(importing_mu_);
    importing_.erase(importing_.find(pkg.canonical));
  });
  auto r = importOpened(req, pkg);
  if (!r) {
    return fail(naming(std::move(r).error(), pkg.readPath(), pkg.canonical));
  }
  return r;
}

// What importVm() does once the package is open: every read goes through the open file.
Result<VmRecord> AgentService::importOpened(const ImportRequest& req, const OpenedPackage& pkg) {
  const std::string path = pkg.readPath();
  std::lock_guard one_import(import_mu_);
  VANDRA_TRY_ASSIGN(auto held, lockVm(req.id));
  VANDRA_TRY_ASSIGN(const auto existing, registry_->get(req.id));
  if (existing) {
    return fail(ErrorCode::AlreadyExists, "A VM named '" + req.id + "' already exists");
  }
  ovf::ImportOptions io;
  io.inspect.lax = req.lax;
  io.inspect.trust_store = config_.trust_store;
  io.inspect.extra_trust = config_.extra_trust;
  // Capacity first, from the verified descriptor, so a VM that does not fit changes nothing.
  VANDRA_TRY_ASSIGN(const ovf::Inspection insp, ovf::inspectPackage(path, io.inspect));
  if (!req.lax) {
    VANDRA_TRY(ovf::requireSound(insp));
  }
  const ovf::VirtualSystemSpec* vs = pick(insp.spec, req.vs);
  if (vs == nullptr) {
    return fail(ErrorCode::NotFound,
                "No virtual system '" + req.vs + "' in '" + pkg.canonical + "'");
  }
  const Resources need = requestOf(*vs);
  VANDRA_TRY_ASSIGN(const Resources in_use, inUse());
  VANDRA_TRY(checkFits(config_.capacity, in_use, need));

  VANDRA_TRY_ASSIGN(const BaseImage base, store_.importBase(path, io));
  const ovf::VirtualSystemSpec* imported = pick(base.spec, vs->id);
  if (imported == nullptr) {
    return fail(ErrorCode::Internal, "Imported package lost virtual system '" + vs->id + "'");
  }
  ovf::VmSpec one = base.spec;
  one.virtual_systems = {*imported};
  VANDRA_TRY(mapNetworks(one, req.networks));
  VmRecord rec;
  rec.id = req.id;
  rec.state = VmState::Created;
  rec.spec_json = ovf::toJson(one).dump();
  rec.vcpus = vs->vcpus;
  rec.memory_mib = need.memory_mib;
  rec.disk_bytes = need.disk_bytes;
  VANDRA_TRY(registry_->insert(rec));
  auto disks = store_.createOverlays(req.id, base, vs->id);
  if (!disks) {
    Error e = disks.error();
    if (auto undo = registry_->remove(req.id); !undo) {
      e.secondary.push_back(undo.error());
    }
    return fail(std::move(e));
  }
  VANDRA_TRY_ASSIGN(auto got, registry_->get(req.id));
  events_.append(req.id, "state", "created", {{"package", pkg.canonical}});
  return got.value_or(rec);
}

Result<void> mapNetworks(ovf::VmSpec& spec, const std::map<std::string, std::string>& map) {
  for (const auto& [from, to] : map) {
    const bool printable =
        std::all_of(to.begin(), to.end(), [](unsigned char c) { return c >= 0x20 && c != 0x7f; });
    if (to.empty() || to.size() > 256 || !printable) {
      return fail(ErrorCode::InvalidArgument,
                  "Network map: bad site network name for '" + from.substr(0, 256) + "'");
    }
    bool used = false;
    for (const auto& vs : spec.virtual_systems) {
      for (const auto& nic : vs.nics) {
        used = used || nic.network == from;
      }
    }
    if (!used) {
      return fail(ErrorCode::InvalidArgument,
                  "Network map: no NIC of the VM is on network '" + from.substr(0, 256) + "'");
    }
  }
  for (auto& vs : spec.virtual_systems) {
    for (auto& nic : vs.nics) {
      if (auto it = map.find(nic.network); it != map.end()) {
        nic.network = it->second;
      }
    }
  }
  // The NetworkSection names the site's networks now, once each.
  std::vector<ovf::NetworkSpec> nets;
  for (auto n : spec.networks) {
    if (auto it = map.find(n.name); it != map.end()) {
      n.name = it->second;
    }
    if (std::none_of(nets.begin(), nets.end(), [&](const auto& m) { return m.name == n.name; })) {
      nets.push_back(std::move(n));
    }
  }
  spec.networks = std::move(nets);
  return {};
}

std::vector<std::string> AgentService::importDirs() const {
  std::vector<std::string> dirs = config_.import_dirs;
  dirs.push_back(uploads_.dir());
  return dirs;
}

Result<UploadInfo> AgentService::commitUpload(UploadWriter& writer, bool lax) {
  return writer.commit([&](const std::string& path) -> Result<void> {
    ovf::InspectOptions o;
    o.lax = lax;
    o.trust_store = config_.trust_store;
    o.extra_trust = config_.extra_trust;
    VANDRA_TRY_ASSIGN(const ovf::Inspection insp, ovf::inspectPackage(path, o));
    if (!lax) {
      VANDRA_TRY(ovf::requireSound(insp));
    }
    return {};
  });
}

Result<void> AgentService::deleteUpload(const std::string& name) {
  VANDRA_TRY(uploads_.get(name));
  {
    std::lock_guard lock(importing_mu_);
    if (importing_.count(uploads_.dir() + "/" + name) != 0) {
      return fail(ErrorCode::Busy,
                  "Upload '" + name + "' is being imported; try again when it ends");
    }
  }
  return uploads_.remove(name);
}

Result<VmRecord> AgentService::createVm(const std::string& id, const std::string& from) {
  if (!validVmId(id)) {
    return fail(ErrorCode::InvalidArgument,
                "VM id '" + id + "' must be 1..64 characters of A-Z a-z 0-9 - _ .");
  }
  std::lock_guard one_import(import_mu_);
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(const auto existing, registry_->get(id));
  if (existing) {
    return fail(ErrorCode::AlreadyExists, "A VM named '" + id + "' already exists");
  }
  VANDRA_TRY_ASSIGN(const VmRecord src, get(from));
  const auto j = nlohmann::json::parse(src.spec_json, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::Internal, "Stored spec of '" + from + "' is not JSON");
  }
  VANDRA_TRY_ASSIGN(ovf::VmSpec spec, ovf::vmSpecFromJson(j));
  if (spec.virtual_systems.size() != 1) {
    return fail(ErrorCode::Internal, "Stored spec of '" + from + "' has no single virtual system");
  }
  for (auto& nic : spec.virtual_systems[0].nics) {
    nic.mac.reset();  // two VMs with one MAC on a LAN would break both
  }
  VANDRA_TRY_ASSIGN(const Resources in_use, inUse());
  const Resources need{src.vcpus, src.memory_mib, src.disk_bytes};
  VANDRA_TRY(checkFits(config_.capacity, in_use, need));
  VmRecord rec;
  rec.id = id;
  rec.state = VmState::Created;
  rec.spec_json = ovf::toJson(spec).dump();
  rec.vcpus = src.vcpus;
  rec.memory_mib = src.memory_mib;
  rec.disk_bytes = src.disk_bytes;
  VANDRA_TRY(registry_->insert(rec));
  std::vector<std::pair<std::string, uint64_t>> disks;
  for (const auto& d : spec.virtual_systems[0].disks) {
    disks.emplace_back(d.id, d.capacity_bytes);
  }
  if (auto made = store_.overlaysLike(id, from, disks); !made) {
    Error e = made.error();
    if (auto undo = registry_->remove(id); !undo) {
      e.secondary.push_back(undo.error());
    }
    return fail(std::move(e));
  }
  VANDRA_TRY_ASSIGN(auto got, registry_->get(id));
  events_.append(id, "state", "created", {{"from_vm", from}});
  return got.value_or(rec);
}

Result<std::vector<VmRecord>> AgentService::list() {
  return registry_->list();
}

Result<VmRecord> AgentService::get(const std::string& id) {
  VANDRA_TRY_ASSIGN(const auto r, registry_->get(id));
  if (!r) {
    return fail(ErrorCode::NotFound, "No VM named '" + id + "'");
  }
  return *r;
}

Result<void> AgentService::deleteVm(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  VANDRA_TRY_ASSIGN(const VmState next, transition(r.state, VmEvent::Delete));
  r.state = next;
  VANDRA_TRY_ASSIGN(r, registry_->update(r));  // Deleting is on disk before the disks go
  VANDRA_TRY(store_.removeVm(id));
  std::error_code ec;
  std::filesystem::remove_all(runPaths(id).dir, ec);
  VANDRA_TRY(registry_->remove(id));
  events_.append(id, "state", "deleted", {});
  return {};
}

Result<HostUsage> AgentService::hostUsage() {
  VANDRA_TRY_ASSIGN(const Resources in_use, inUse());
  return HostUsage{config_.capacity, in_use, available(config_.capacity, in_use)};
}

Result<nlohmann::json> AgentService::host() {
  VANDRA_TRY_ASSIGN(const HostUsage h, hostUsage());
  return nlohmann::json{{"capacity", toJson(h.capacity.total)},
                        {"reserved", toJson(h.capacity.reserved)},
                        {"used", toJson(h.used)},
                        {"free", toJson(h.free)}};
}

}  // namespace vandra::agent

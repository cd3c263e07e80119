// MigrationService: the stretched LAN (the link's Ethernet stream) and its steps across the
// switchover. migration_service_impl.h says where the rest is.
#include "migration_service_impl.h"

namespace vandra::orchestrator {

namespace fs = std::filesystem;

// The LAN tap of a link to @p peer: "vw" + 8 hex digits (FNV-1a of the name and a counter:
// a new link's tap may exist while the dead link's is still being taken down), at most 15
// characters as Linux wants.
std::string lanTapName(const std::string& peer) {
  static std::atomic<uint32_t> links{0};
  uint32_t h = 2166136261U;
  for (char c : peer + "#" + std::to_string(links.fetch_add(1))) {
    h = (h ^ static_cast<uint8_t>(c)) * 16777619U;
  }
  static const char* hex = "0123456789abcdef";
  std::string n = "vw";
  for (int i = 7; i >= 0; --i) {
    n += hex[(h >> (i * 4)) & 0xF];
  }
  return n;
}

// Where the VM's frames cross this site's LAN: its own tap, and the link's LAN tap.
std::vector<std::string> MigrationService::Impl::lanInterfaces(const std::string& vm_id,
                                                               PeerLink& link) {
  std::vector<std::string> out{agent::tapName(vm_id, 0)};
  std::lock_guard lock(link.mu);
  if (link.lan) {
    out.push_back(link.lan->name());
  }
  return out;
}

// The MACs of the VM's NICs as QEMU runs them, NIC i on tap agent::tapName(vm_id, i).
Result<std::vector<std::string>> MigrationService::Impl::nicMacs(const std::string& vm_id) {
  VANDRA_TRY_ASSIGN(const agent::VmRecord vm, agent_.get(vm_id));
  const auto j = json::parse(vm.spec_json, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::InvalidArgument, "VM '" + vm_id + "' has an unreadable spec");
  }
  VANDRA_TRY_ASSIGN(const ovf::VmSpec spec, ovf::vmSpecFromJson(j));
  if (spec.virtual_systems.empty() || spec.virtual_systems.front().nics.empty()) {
    return fail(ErrorCode::NotFound, "VM '" + vm_id + "' has no NIC");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < spec.virtual_systems.front().nics.size(); ++i) {
    VANDRA_TRY_ASSIGN(std::string mac, qemu::nicMac(spec.virtual_systems.front(), i));
    out.push_back(std::move(mac));
  }
  return out;
}

// The first NIC's MAC, as QEMU runs it.
Result<std::string> MigrationService::Impl::firstNicMac(const std::string& vm_id) {
  VANDRA_TRY_ASSIGN(auto macs, nicMacs(vm_id));
  return macs.front();
}

json MigrationService::Impl::lanAtTarget(PeerLink& l, const std::string& vm_id,
                                         TargetSide::Config::LanStep step) {
  using Step = TargetSide::Config::LanStep;
  auto macs = nicMacs(vm_id);
  if (!macs) {
    return {{"error", macs.error().describe()}};
  }
  json out = {{"macs", *macs}};
  std::vector<std::string> errors;
  uint64_t delivered = 0;
  uint64_t discarded = 0;
  std::lock_guard lock(l.mu);  // the link's LAN tap stays while we use it
  if (!l.lan) {
    return {{"error", "no stretched LAN on the link to " + l.peer}};
  }
  for (size_t i = 0; i < macs->size(); ++i) {
    const std::string& mac = (*macs)[i];
    if (step == Step::Hold) {
      if (auto h = l.lan->hold(mac, kLanHoldLifetime); !h) {
        errors.push_back(h.error().describe());
      }
    } else if (step == Step::Deliver) {
      // First the bridge, so the frames released next (and all later ones) reach the guest.
      if (auto p = pointBridgeAt("", mac, agent::tapName(vm_id, i)); !p) {
        errors.push_back(p.error().describe());
      }
      const auto r = l.lan->release(mac, kLanHeldMaxAge);
      delivered += r.delivered;
      discarded += r.discarded;
    } else {
      discarded += l.lan->drop(mac);
    }
  }
  if (step != Step::Hold) {
    out["frames_delivered"] = delivered;
    out["frames_discarded"] = discarded;
  }
  if (!errors.empty()) {
    out["error"] = errors.front();
  }
  return out;
}

// The source's half, at the guest's STOP: frames for the VM go to the peer from now on.
json MigrationService::Impl::lanAtSourceStop(PeerLink& l, const std::vector<std::string>& macs) {
  const auto t0 = SteadyClock::now();
  std::string tap;
  {
    std::lock_guard lock(l.mu);
    if (l.lan) {
      tap = l.lan->name();
    }
  }
  if (tap.empty()) {
    return {{"error", "no stretched LAN on the link to " + l.peer}};
  }
  json out = {{"macs", macs}, {"to", tap}};
  for (const auto& mac : macs) {
    if (auto p = pointBridgeAt("", mac, tap); !p) {
      out["error"] = p.error().describe();
      break;
    }
    // What clients at the peer's site send the guest comes here: back it goes, to wait there.
    std::lock_guard lock(l.mu);
    if (auto r = l.lan ? l.lan->reflect(mac, kLanHoldLifetime) : Result<void>{}; !r) {
      out["error"] = r.error().describe();
      break;
    }
  }
  out["took_ms"] = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  return out;
}

}  // namespace vandra::orchestrator

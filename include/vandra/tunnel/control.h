// Control messages of the migration protocol between the source site's agent (S) and the
// target site's agent (T). Each message is one JSON object carried in the DATA frames of a
// control stream (frame.h; StreamKind::Control), at most kMaxControlMessage bytes, with a
// "type" and a "migration_id". Pure: no I/O, no exceptions. docs/tunnel/protocol.md has the
// whole exchange; this header defines each message.
//
//   S (source)                                   T (target)
//     |-- preflight {vm, spec, sla, disks, ...} --->|  can T host it? which bases does it have?
//     |   (network_map?: NICs' networks renamed)    |  (T checks its networks by T's names)
//     |<-- preflight_result {ok, reasons, free} ----|
//     |-- prepare --------------------------------->|  create disks, QEMU -incoming, NBD exports
//     |<-- prepared {exports, ready} ---------------|
//     |   (NBD and migration streams: DATA/WINDOW)  |  progress {..} either way, any time
//     |-- switchover ------------------------------>|  S paused, mirrors done, last pages sent
//     |<-- started {target_pid} --------------------|
//     |-- confirm --------------------------------->|  S will now destroy its copy
//     |<-- confirmed -------------------------------|
//   post-copy (the switchover went to post-copy; between started and confirm), when the
//   migration stream broke or stalled and the source paused its end:
//     |-- recover {attempt} ----------------------->|  pause if still waiting, listen again
//     |<-- recovering {attempt} --------------------|  (a new migration stream, per attempt)
//   at any point before confirmed, either side:  abort {reason, phase}  ->  aborted {cleaned}
//   at any time, either side (a restarted agent settling what it was doing):
//     |-- query ----------------------------------->|
//     |<-- status {known, phase, guest_running} ----|
//
// Decoding is strict: the text must be one JSON object, no deeper than kMaxControlDepth,
// without duplicate keys; every member of the message is required (but preflight's
// network_map, absent when empty), no other member is allowed, and every value is checked
// for its type and range. Ids are [A-Za-z0-9_.-]{1,64}, site names [a-z0-9-]{1,64}, digests
// "" or 64 lowercase hex digits, free text is UTF-8 without control characters and bounded
// (the limits below). Numbers must be JSON integers (no fraction, no exponent) where the
// field is an integer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "vandra/common/migration_phase.h"
#include "vandra/common/result.h"

namespace vandra::tunnel {

inline constexpr size_t kMaxControlMessage = 64 * 1024;  // bytes of one encoded message
inline constexpr size_t kMaxControlSpec = 48 * 1024;     // preflight.spec, compact JSON
inline constexpr size_t kMaxControlSla = 8 * 1024;       // preflight.sla, compact JSON
inline constexpr size_t kMaxControlDepth = 32;           // nesting of arrays and objects
inline constexpr size_t kMaxControlText = 512;           // reasons, leftovers, networks
inline constexpr size_t kMaxAbortReason = 1024;
inline constexpr size_t kMaxControlList = 64;  // disks, networks, reasons, ...
inline constexpr uint32_t kMaxVcpus = 4096;
inline constexpr size_t kMaxNetworkName = 64;  // preflight.network_map's names

/// The phases named by abort and progress: the orchestrator's (vandra/common/migration_phase.h),
/// by its names, from preflight to confirm (a terminal or rollback phase is refused).
using vandra::MigrationPhase;

/// A disk of the VM as the source offers it.
struct PreflightDisk {
  std::string id;             // id
  uint64_t virtual_size = 0;  // bytes, >= 1
  std::string base_digest;    // sha256 hex of its base image's content, or "" (no base)
  bool operator==(const PreflightDisk&) const = default;
};

/// "preflight" S->T: can the target host this VM? Nothing is created yet.
struct Preflight {
  std::string migration_id;
  std::string vm_id;                 // id
  nlohmann::json spec;               // the VmSpec (docs/ovf/vmspec-json.md): an object, opaque here
  std::string source_site;           // site name
  nlohmann::json sla;                // the VM's SLA: an object, opaque here
  std::vector<PreflightDisk> disks;  // 0..64, ids unique
  std::string machine_type;          // QEMU machine, e.g. "pc-q35-7.2": [A-Za-z0-9_.:,+=-]{1,128}
  std::string cpu_model;             // QEMU CPU model, e.g. "host": same alphabet
  std::vector<std::string> networks;  // 0..64 network names, text 1..512
  uint64_t memory_mib = 0;            // >= 1
  uint32_t vcpus = 0;                 // 1..kMaxVcpus
  /// The source's network -> the target's, for the NICs whose network has another name at
  /// the target (the controller's mapping): the target renames them in the spec before it
  /// checks its networks. 0..64 entries, names text 1..64, every key one of `networks`.
  /// The one optional member: sent only when not empty, so that an unmapped move reads the
  /// same to an agent that predates it.
  std::map<std::string, std::string> network_map;
  bool operator==(const Preflight&) const = default;
};

struct FreeResources {
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_bytes = 0;
  bool operator==(const FreeResources&) const = default;
};

/// "preflight_result" T->S: yes (ok, reasons empty) or no (reasons non-empty), with what the
/// target has free and which base images it already holds (so S sends only the deltas).
struct PreflightResult {
  std::string migration_id;
  bool ok = false;
  std::vector<std::string> reasons;  // 0..64 texts; empty exactly when ok
  std::string target_site;           // site name
  std::string jurisdiction;          // text 0..64, e.g. "EU" ("" when unknown)
  FreeResources free;
  std::vector<std::string> bases_present;  // 0..64 digests (64 hex), no ""
  bool operator==(const PreflightResult&) const = default;
};

/// "prepare" S->T: go ahead: create the disks, start QEMU with -incoming, export them by NBD.
struct Prepare {
  std::string migration_id;
  bool operator==(const Prepare&) const = default;
};

struct NbdExport {
  std::string disk_id;      // id
  std::string export_name;  // id
  bool operator==(const NbdExport&) const = default;
};

/// "prepared" T->S: the NBD exports to mirror into (disk ids unique); ready = QEMU -incoming
/// is listening and every export is up.
struct Prepared {
  std::string migration_id;
  std::vector<NbdExport> exports;  // 0..64
  bool ready = false;
  bool operator==(const Prepared&) const = default;
};

/// "switchover" S->T: the source is paused, every mirror is complete and the last RAM pages
/// are sent: start the guest.
struct Switchover {
  std::string migration_id;
  bool operator==(const Switchover&) const = default;
};

/// "started" T->S: the guest runs on the target.
struct Started {
  std::string migration_id;
  uint64_t target_pid = 0;  // QEMU's pid on the target host, 1..2^31-1
  bool operator==(const Started&) const = default;
};

/// "confirm" S->T: the source will now destroy its copy; "confirmed" T->S: acknowledged,
/// the migration is complete and can no longer be aborted.
struct Confirm {
  std::string migration_id;
  bool operator==(const Confirm&) const = default;
};
struct Confirmed {
  std::string migration_id;
  bool operator==(const Confirmed&) const = default;
};

/// "abort" either way: stop and roll back. Answered by "aborted".
struct Abort {
  std::string migration_id;
  std::string reason;                                // text 1..1024
  MigrationPhase phase = MigrationPhase::Preflight;  // the phase the sender was in
  bool operator==(const Abort&) const = default;
};

/// "aborted" either way: the rollback is done; cleaned = nothing is left behind, else
/// leftovers names what is (cleaned and a non-empty leftovers list contradict each other).
struct Aborted {
  std::string migration_id;
  bool cleaned = false;
  std::vector<std::string> leftovers;  // 0..64 texts
  bool operator==(const Aborted&) const = default;
};

/// "progress" either way, optional, informative only.
struct Progress {
  std::string migration_id;
  MigrationPhase phase = MigrationPhase::MirrorDisks;
  uint64_t bytes_sent = 0;
  uint64_t bytes_remaining = 0;
  uint64_t dirty_rate_bps = 0;
  bool operator==(const Progress&) const = default;
};

/// "query" either way: what does the peer know of this migration? Sent by an agent that
/// restarted in the middle of one (orchestrator recovery) before it decides anything.
struct Query {
  std::string migration_id;
  bool operator==(const Query&) const = default;
};

inline constexpr size_t kMaxStatusPhase = 32;

/// "status": the answer to query. known = the peer has a record of the migration; phase =
/// that record's phase as the orchestrator names it ("confirm", "rolled_back", ...: 1..32 of
/// a-z and _; "" exactly when not known); guest_running = the peer's QEMU for the VM runs
/// the guest now.
struct Status {
  std::string migration_id;
  bool known = false;
  std::string phase;
  bool guest_running = false;
  bool operator==(const Status&) const = default;
};

inline constexpr uint32_t kMaxRecoverAttempt = 1000000;

/// "recover" S->T, in post-copy: the source paused its end of a broken or stalled migration
/// stream; the target pauses its end too (if it still waits) and listens again, for the
/// migration stream of this attempt (1..kMaxRecoverAttempt, rising). "recovering" T->S: it
/// listens; the source now resumes over the new stream.
struct Recover {
  std::string migration_id;
  uint32_t attempt = 1;
  bool operator==(const Recover&) const = default;
};
struct Recovering {
  std::string migration_id;
  uint32_t attempt = 1;
  bool operator==(const Recovering&) const = default;
};

using ControlMessage =
    std::variant<Preflight, PreflightResult, Prepare, Prepared, Switchover, Started, Confirm,
                 Confirmed, Abort, Aborted, Progress, Query, Status, Recover, Recovering>;

/// The message's "type" string, e.g. "preflight_result".
std::string_view typeName(const ControlMessage& m);
const std::string& migrationId(const ControlMessage& m);

/// Compact JSON text of @p m, with the decoder's rules applied first so that nothing the
/// peer would refuse is sent. Errors: InvalidArgument (a field breaks a rule),
/// LimitExceeded (the text would exceed kMaxControlMessage, spec or sla too large/deep).
[[nodiscard]] Result<std::string> encodeControl(const ControlMessage& m);

/// Errors: LimitExceeded (more than kMaxControlMessage bytes, or nesting deeper than
/// kMaxControlDepth: both checked before parsing), TunnelProtocol (not JSON, not an
/// object, duplicate key, unknown "type", missing or unknown member, wrong type, value out of
/// range; the message names the member).
[[nodiscard]] Result<ControlMessage> decodeControl(std::string_view text);

}  // namespace vandra::tunnel

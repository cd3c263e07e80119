// Error values shared by every subsystem. Callers branch on `code`, never on `message`
// text. An error may carry the errno that caused it, where in the input it happened, a
// cause chain, and secondary errors (for example from a rollback that also failed).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vandra {

/// One code per distinct condition a caller may want to react to. Persisted and mapped to
/// exit codes, so values are stable: add at the end only.
enum class ErrorCode : uint16_t {
  Ok = 0,
  Internal = 1,         // a bug: should not happen
  InvalidArgument = 2,  // caller (user, API) passed something unusable
  NotFound = 3,
  AlreadyExists = 4,
  Io = 5,  // the operating system refused (see sys_errno)
  Unsupported = 6,
  LimitExceeded = 7,  // an input is larger / deeper / longer than allowed
  Timeout = 8,
  Subprocess = 9,
  Cancelled = 10,  // an operator cancelled the operation (it was undone)
  Forbidden = 11,  // who asked may not do this (a viewer's change, a path outside the folders)

  // OVF/OVA package problems (hostile or broken input).
  XmlMalformed = 100,            // not well-formed XML
  XmlForbidden = 101,            // DTD, entity declaration, external entity
  OvfInvalid = 102,              // well-formed XML but not a usable OVF descriptor
  OvfUnsupportedRequired = 103,  // a required section/element vandra does not understand
  OvfReference = 104,            // dangling or duplicate id / file reference
  OvfValue = 105,                // an attribute or element value out of range / unparsable
  ManifestMismatch = 106,
  ManifestInvalid = 107,
  SignatureInvalid = 108,      // signature does not verify over the manifest
  CertificateUntrusted = 109,  // chain does not lead to the trust store
  CertificateSelfSigned = 110,
  CertificateExpired = 111,
  ArchiveInvalid = 112,          // tar structure broken or truncated
  ArchiveForbiddenMember = 113,  // absolute path, .., link, device, duplicate
  PackageMissingFile = 114,
  PackageExtraFile = 115,
  DiskImageInvalid = 116,  // image is not what it claims or does not match the descriptor
  SlaInvalid = 117,
  SlaViolated = 118,  // the request would break a VM's SLA (the clause is in the message)

  // QMP (QEMU Machine Protocol) client.
  QmpError = 200,         // QEMU answered a command with an error reply (class and desc in message)
  QmpProtocol = 201,      // the peer broke the protocol: garbage JSON, bad greeting, oversized line
  QmpDisconnected = 202,  // the monitor connection closed (QEMU exited or closed the socket)

  // Agent (VM lifecycle, resources).
  IllegalTransition = 300,  // the request is not allowed in the VM's current state
  Busy = 301,               // the VM is locked by another operation (e.g. a migration)
  CapacityExceeded = 302,   // the host lacks the vCPU, memory or disk the VM needs
  StaleEpoch = 303,  // a command from a controller whose leadership epoch has been superseded

  // Site tunnel (frames and control messages between two sites' agents).
  TunnelProtocol = 400,  // the peer broke the tunnel protocol (bad frame or control message)
  TunnelVersion = 401,   // no common tunnel protocol version
};

std::string_view toString(ErrorCode code);
/// The code toString() names @p name (e.g. from an agent's JSON error); nullopt if none.
std::optional<ErrorCode> errorCodeFromString(std::string_view name);

/// How a caller should treat an error: the one table from which the CLI's exit codes and the
/// API's HTTP statuses are both derived.
enum class ErrorKind : uint8_t {
  Failure,     // the environment failed (I/O, a helper program, a bug): exit 1, HTTP 500
  BadRequest,  // the request itself is malformed: exit 3, HTTP 400
  BadInput,    // the input it names is unusable (package, descriptor, SLA): exit 3, HTTP 422
  NotFound,    // exit 4, HTTP 404
  Conflict,    // exists already / not allowed in the current state: exit 3, HTTP 409
  Forbidden,   // the caller's role or the agent's folders do not allow it: exit 6, HTTP 403
  Busy,        // locked by another operation, try again: exit 5, HTTP 409
  TooLarge,    // beyond a size limit: exit 3, HTTP 413
  NoCapacity,  // the host cannot fit it: exit 3, HTTP 507
  Timeout,     // exit 1, HTTP 504
};
ErrorKind kindOf(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::Internal;
  std::string message;           // short, capitalised, with the values that matter
  std::optional<int> sys_errno;  // errno captured at the failing call
  std::optional<int> line;       // line in the input document, when known
  std::shared_ptr<const Error> cause;
  std::vector<Error> secondary;  // e.g. cleanup failures; never replace the primary

  Error() = default;
  Error(ErrorCode c, std::string msg) : code(c), message(std::move(msg)) {}

  /// Error built from the current errno.
  static Error fromErrno(std::string msg);
  Error& atLine(int l) {
    line = l;
    return *this;
  }
  Error withCause(Error c) &&;

  /// One line for humans: "message (line N): cause message: strerror".
  std::string describe() const;
};

}  // namespace vandra

#include "vandra/common/error.h"

#include <cerrno>
#include <cstring>

namespace vandra {

std::string_view toString(ErrorCode code) {
  switch (code) {
    case ErrorCode::Ok:
      return "ok";
    case ErrorCode::Internal:
      return "internal";
    case ErrorCode::InvalidArgument:
      return "invalid_argument";
    case ErrorCode::NotFound:
      return "not_found";
    case ErrorCode::AlreadyExists:
      return "already_exists";
    case ErrorCode::Io:
      return "io";
    case ErrorCode::Unsupported:
      return "unsupported";
    case ErrorCode::LimitExceeded:
      return "limit_exceeded";
    case ErrorCode::Timeout:
      return "timeout";
    case ErrorCode::Subprocess:
      return "subprocess";
    case ErrorCode::Cancelled:
      return "cancelled";
    case ErrorCode::Forbidden:
      return "forbidden";
    case ErrorCode::SlaViolated:
      return "sla_violated";
    case ErrorCode::StaleEpoch:
      return "stale_epoch";
    case ErrorCode::XmlMalformed:
      return "xml_malformed";
    case ErrorCode::XmlForbidden:
      return "xml_forbidden";
    case ErrorCode::OvfInvalid:
      return "ovf_invalid";
    case ErrorCode::OvfUnsupportedRequired:
      return "ovf_unsupported_required";
    case ErrorCode::OvfReference:
      return "ovf_reference";
    case ErrorCode::OvfValue:
      return "ovf_value";
    case ErrorCode::ManifestMismatch:
      return "manifest_mismatch";
    case ErrorCode::ManifestInvalid:
      return "manifest_invalid";
    case ErrorCode::SignatureInvalid:
      return "signature_invalid";
    case ErrorCode::CertificateUntrusted:
      return "certificate_untrusted";
    case ErrorCode::CertificateSelfSigned:
      return "certificate_self_signed";
    case ErrorCode::CertificateExpired:
      return "certificate_expired";
    case ErrorCode::ArchiveInvalid:
      return "archive_invalid";
    case ErrorCode::ArchiveForbiddenMember:
      return "archive_forbidden_member";
    case ErrorCode::PackageMissingFile:
      return "package_missing_file";
    case ErrorCode::PackageExtraFile:
      return "package_extra_file";
    case ErrorCode::DiskImageInvalid:
      return "disk_image_invalid";
    case ErrorCode::SlaInvalid:
      return "sla_invalid";
    case ErrorCode::QmpError:
      return "qmp_error";
    case ErrorCode::QmpProtocol:
      return "qmp_protocol";
    case ErrorCode::QmpDisconnected:
      return "qmp_disconnected";
    case ErrorCode::IllegalTransition:
      return "illegal_transition";
    case ErrorCode::Busy:
      return "busy";
    case ErrorCode::CapacityExceeded:
      return "capacity_exceeded";
    case ErrorCode::TunnelProtocol:
      return "tunnel_protocol";
    case ErrorCode::TunnelVersion:
      return "tunnel_version";
  }
  return "unknown";
}

std::optional<ErrorCode> errorCodeFromString(std::string_view name) {
  // Codes are below 1000 and stable; toString() is the one table of names.
  for (uint16_t v = 0; v < 1000; ++v) {
    const auto c = static_cast<ErrorCode>(v);
    const std::string_view n = toString(c);
    if (n != "unknown" && n == name) {
      return c;
    }
  }
  return std::nullopt;
}

ErrorKind kindOf(ErrorCode code) {
  switch (code) {
    case ErrorCode::Ok:
    case ErrorCode::Internal:
    case ErrorCode::Io:
    case ErrorCode::Subprocess:
    case ErrorCode::QmpError:
    case ErrorCode::QmpProtocol:
    case ErrorCode::QmpDisconnected:
      return ErrorKind::Failure;
    case ErrorCode::InvalidArgument:
      return ErrorKind::BadRequest;
    case ErrorCode::NotFound:
      return ErrorKind::NotFound;
    case ErrorCode::AlreadyExists:
    case ErrorCode::IllegalTransition:
    case ErrorCode::Cancelled:
    case ErrorCode::TunnelVersion:
    case ErrorCode::SlaViolated:
    case ErrorCode::StaleEpoch:
      return ErrorKind::Conflict;
    case ErrorCode::Forbidden:
      return ErrorKind::Forbidden;
    case ErrorCode::Busy:
      return ErrorKind::Busy;
    case ErrorCode::LimitExceeded:
      return ErrorKind::TooLarge;
    case ErrorCode::CapacityExceeded:
      return ErrorKind::NoCapacity;
    case ErrorCode::Timeout:
      return ErrorKind::Timeout;
    case ErrorCode::Unsupported:
    case ErrorCode::XmlMalformed:
    case ErrorCode::XmlForbidden:
    case ErrorCode::OvfInvalid:
    case ErrorCode::OvfUnsupportedRequired:
    case ErrorCode::OvfReference:
    case ErrorCode::OvfValue:
    case ErrorCode::ManifestMismatch:
    case ErrorCode::ManifestInvalid:
    case ErrorCode::SignatureInvalid:
    case ErrorCode::CertificateUntrusted:
    case ErrorCode::CertificateSelfSigned:
    case ErrorCode::CertificateExpired:
    case ErrorCode::ArchiveInvalid:
    case ErrorCode::ArchiveForbiddenMember:
    case ErrorCode::PackageMissingFile:
    case ErrorCode::PackageExtraFile:
    case ErrorCode::DiskImageInvalid:
    case ErrorCode::SlaInvalid:
    case ErrorCode::TunnelProtocol:
      return ErrorKind::BadInput;
  }
  return ErrorKind::Failure;
}

Error Error::fromErrno(std::string msg) {
  const int e = errno;
  Error err(e == ENOENT ? ErrorCode::NotFound : ErrorCode::Io, std::move(msg));
  err.sys_errno = e;
  return err;
}

Error Error::withCause(Error c) && {
  cause = std::make_shared<const Error>(std::move(c));
  return std::move(*this);
}

std::string Error::describe() const {
  std::string out = message;
  if (line) {
    out += " (line " + std::to_string(*line) + ")";
  }
  if (sys_errno) {
    out += ": ";
    out += std::strerror(*sys_errno);
  }
  if (cause) {
    out += ": " + cause->describe();
  }
  return out;
}

}  // namespace vandra

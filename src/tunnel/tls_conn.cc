// TLS helpers of the site tunnel transport: the mutual-TLS context with site-name checks,
// the handshake-phase I/O with deadlines on non-blocking sockets, and errors that say why a
// peer was refused (unknown CA, wrong name, expired) on whichever side refused it.
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cstring>

#include "transport.h"
#include "vandra/pki/tls.h"
#include "wire.h"

namespace vandra::tunnel::detail {
namespace {

constexpr unsigned kHostFlags = X509_CHECK_FLAG_NO_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT;

int infoIndex() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

std::string subjectOf(X509* cert) {
  if (cert == nullptr) {
    return "?";
  }
  char buf[256] = "";
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

// Records the first verification failure (or the peer's certificate) for the error message.
int verifyCallback(int ok, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* info =
      ssl != nullptr ? static_cast<HandshakeInfo*>(SSL_get_ex_data(ssl, infoIndex())) : nullptr;
  if (info != nullptr) {
    const int depth = X509_STORE_CTX_get_error_depth(store);
    if (ok == 0 && info->verify_error == X509_V_OK) {
      info->verify_error = X509_STORE_CTX_get_error(store);
      info->depth = depth;
      info->subject = subjectOf(X509_STORE_CTX_get_current_cert(store));
    } else if (ok != 0 && depth == 0 && info->verify_error == X509_V_OK) {
      info->subject = subjectOf(X509_STORE_CTX_get_current_cert(store));
    }
  }
  return ok;
}

std::string opensslReason() {
  const unsigned long e = ERR_peek_last_error();
  if (e == 0) {
    return "";
  }
  const char* r = ERR_reason_error_string(e);
  return r != nullptr ? r : "error " + std::to_string(ERR_GET_REASON(e));
}

// Our verification of the peer's certificate failed: why, in the brief's three words.
Error verifyFailure(const HandshakeInfo& info, const std::string& who,
                    const std::string& expected) {
  const std::string detail = X509_verify_cert_error_string(info.verify_error);
  const std::string cert = "certificate '" + info.subject + "'";
  switch (info.verify_error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return Error(ErrorCode::CertificateExpired, "Refused " + who + ": expired: its " + cert +
                                                      " is outside its validity (" + detail + ")");
    case X509_V_ERR_CERT_REVOKED:
      return Error(ErrorCode::CertificateUntrusted,
                   "Refused " + who + ": revoked: its " + cert + " is on its CA's revocation list");
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return Error(ErrorCode::CertificateUntrusted, "Refused " + who +
                                                        ": no CRL for the CA of its " + cert +
                                                        " in our CRL file (" + detail + ")");
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return Error(ErrorCode::CertificateUntrusted, "Refused " + who + ": wrong name: its " + cert +
                                                        " does not name " + expected +
                                                        " as a subjectAltName DNS entry");
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return Error(ErrorCode::CertificateUntrusted,
                   "Refused " + who + ": unknown CA: its " + cert +
                       " does not chain to a CA in the trust list (" + detail + ")");
    default:
      return Error(ErrorCode::CertificateUntrusted,
                   "Refused " + who + ": its " + cert + " did not verify (" + detail + ")");
  }
}

// The peer refused us: the TLS alert it sent says why.
std::optional<Error> alertFailure(const std::string& who) {
  const unsigned long e = ERR_peek_last_error();
  if (e == 0 || ERR_GET_LIB(e) != ERR_LIB_SSL) {
    return std::nullopt;
  }
  const int reason = ERR_GET_REASON(e);
  const std::string alert = opensslReason();
  switch (reason) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      return Error(
          ErrorCode::CertificateUntrusted,
          who + " refused our certificate: unknown CA (our site CA is not in its trust list; " +
              alert + ")");
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
      return Error(ErrorCode::CertificateUntrusted,
                   who + " refused our certificate: revoked (it is on our CA's revocation list; " +
                       alert + ")");
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      return Error(ErrorCode::CertificateExpired,
                   who + " refused our certificate: expired (" + alert + ")");
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      return Error(
          ErrorCode::CertificateUntrusted,
          who +
              " refused our certificate: wrong name or bad certificate (it does not accept "
              "the site our certificate names; " +
              alert + ")");
    default:
      return std::nullopt;
  }
}

}  // namespace

Result<void> waitFd(int fd, short events, Clock::time_point deadline, int stop_fd,
                    const std::string& who) {
  for (;;) {
    const auto now = Clock::now();
    if (now >= deadline) {
      return fail(ErrorCode::Timeout, "Timed out talking to " + who);
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    const int r = ::poll(p, stop_fd >= 0 ? 2 : 1, static_cast<int>(ms));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Error::fromErrno("poll on the connection to " + who + " failed"));
    }
    if (stop_fd >= 0 && (p[1].revents & POLLIN) != 0) {
      return fail(ErrorCode::Io, "Stopped while talking to " + who);
    }
    if (r > 0 && p[0].revents != 0) {
      return {};
    }
  }
}

namespace {

// Handles SSL_ERROR_WANT_*: waits for the socket; anything else is the error.
Result<void> retry(SSL* ssl, int ret, int fd, Clock::time_point deadline, int stop_fd,
                   const std::string& who, const std::string& what) {
  const int err = SSL_get_error(ssl, ret);
  if (err == SSL_ERROR_WANT_READ) {
    return waitFd(fd, POLLIN, deadline, stop_fd, who);
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    return waitFd(fd, POLLOUT, deadline, stop_fd, who);
  }
  if (auto refused = alertFailure(who)) {
    ERR_clear_error();
    return fail(std::move(*refused));
  }
  return fail(sslError(ssl, ret, what + " " + who));
}

}  // namespace

void blockSigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Error sslError(SSL* ssl, int ret, const std::string& what) {
  const int err = SSL_get_error(ssl, ret);
  std::string why;
  const int saved = errno;
  if (err == SSL_ERROR_ZERO_RETURN) {
    why = "the peer closed the connection";
  } else if (err == SSL_ERROR_SYSCALL) {
    why = ERR_peek_last_error() != 0 ? opensslReason()
          : saved != 0 && ret < 0    ? std::strerror(saved)
                                     : "the peer closed the connection";
  } else {
    why = opensslReason();
    if (why.empty()) {
      why = "TLS error " + std::to_string(err);
    }
  }
  ERR_clear_error();
  Error e(ErrorCode::Io, what + ": " + why);
  if (err == SSL_ERROR_SYSCALL && saved != 0 && ret < 0) {
    e.sys_errno = saved;
  }
  return e;
}

Result<SslCtxPtr> makeContext(const TunnelSettings& s, bool server,
                              const std::vector<std::string>& peer_names) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) {
    return fail(ErrorCode::Internal, "Cannot create a TLS context");
  }
  VANDRA_TRY(pki::configureMutualTls(
      ctx.get(), {s.ca_bundle_path, s.cert_path, s.key_path, s.crl_path}, server));
  X509* own = SSL_CTX_get0_certificate(ctx.get());
  if (own == nullptr ||
      X509_check_host(own, s.local_site.data(), s.local_site.size(), kHostFlags, nullptr) != 1) {
    return fail(ErrorCode::InvalidArgument, "Our certificate '" + s.cert_path + "' (" +
                                                subjectOf(own) + ") does not name site '" +
                                                s.local_site + "' as a subjectAltName DNS entry");
  }
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(ctx.get(), SSL_CTX_get_verify_mode(ctx.get()), verifyCallback);
  if (server) {
    SSL_CTX_set_num_tickets(ctx.get(), 0);  // no resumption: every connection proves itself
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx.get());
    X509_VERIFY_PARAM_set_hostflags(param, kHostFlags);
    for (const auto& name : peer_names) {
      if (X509_VERIFY_PARAM_add1_host(param, name.c_str(), name.size()) != 1) {
        return fail(ErrorCode::InvalidArgument, "Cannot expect peer site name '" + name + "'");
      }
    }
  }
  return ctx;
}

Result<SslPtr> newSsl(SSL_CTX* ctx, int fd, bool server, const std::string& peer_name,
                      HandshakeInfo* info) {
  SslPtr ssl(SSL_new(ctx));
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1) {
    return fail(ErrorCode::Internal, "Cannot create a TLS connection");
  }
  SSL_set_ex_data(ssl.get(), infoIndex(), info);
  if (!server) {
    SSL_set_hostflags(ssl.get(), kHostFlags);
    if (SSL_set1_host(ssl.get(), peer_name.c_str()) != 1) {
      return fail(ErrorCode::InvalidArgument, "Cannot expect peer site name '" + peer_name + "'");
    }
  }
  return ssl;
}

Result<void> tlsHandshake(SSL* ssl, int fd, bool server, Clock::time_point deadline, int stop_fd,
                          const HandshakeInfo& info, const std::string& who,
                          const std::string& expected) {
  for (;;) {
    ERR_clear_error();
    const int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
    if (r == 1) {
      break;
    }
    if (info.verify_error != X509_V_OK) {
      ERR_clear_error();
      return fail(verifyFailure(info, who, expected));
    }
    auto w = retry(ssl, r, fd, deadline, stop_fd, who, "TLS handshake with");
    if (!w) {
      return fail(std::move(w).error());
    }
  }
  SSL_set_ex_data(ssl, infoIndex(), nullptr);
  if (SSL_version(ssl) != TLS1_3_VERSION) {
    return fail(ErrorCode::CertificateUntrusted, "Refused " + who + ": not TLS 1.3");
  }
  return {};
}

Result<void> tlsWriteAll(SSL* ssl, int fd, std::string_view bytes, Clock::time_point deadline,
                         int stop_fd, const std::string& who) {
  size_t off = 0;
  while (off < bytes.size()) {
    ERR_clear_error();
    const int r = SSL_write(ssl, bytes.data() + off, static_cast<int>(bytes.size() - off));
    if (r > 0) {
      off += static_cast<size_t>(r);
      continue;
    }
    VANDRA_TRY(retry(ssl, r, fd, deadline, stop_fd, who, "Writing to"));
  }
  return {};
}

Result<Frame> tlsReadFrame(SSL* ssl, int fd, FrameDecoder& decoder, Clock::time_point deadline,
                           int stop_fd, const std::string& who) {
  char buf[4096];
  for (;;) {
    VANDRA_TRY_ASSIGN(auto f, decoder.next());
    if (f) {
      return std::move(*f);
    }
    ERR_clear_error();
    const int r = SSL_read(ssl, buf, sizeof buf);
    if (r > 0) {
      decoder.feed(buf, static_cast<size_t>(r));
      continue;
    }
    VANDRA_TRY(retry(ssl, r, fd, deadline, stop_fd, who, "Reading from"));
  }
}

std::string encodeControlFrame(uint8_t version, Command c, uint32_t stream, std::string payload) {
  Frame f;
  f.version = version;
  f.command = c;
  f.stream_id = stream;
  f.payload = std::move(payload);
  return encodeFrame(f);
}

std::string encodeDataFrame(uint8_t version, uint32_t stream, uint16_t flags,
                            std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderSize + payload.size());
  wire::putU32(out, kFrameMagic);
  wire::putU8(out, version);
  wire::putU8(out, static_cast<uint8_t>(Command::Data));
  wire::putU16(out, flags);
  wire::putU32(out, stream);
  wire::putU32(out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
  return out;
}

std::string cleanReason(std::string_view reason) {
  std::string out(reason.substr(0, kMaxCloseReason));
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7F) {
      c = '?';
    }
  }
  return out;
}

}  // namespace vandra::tunnel::detail

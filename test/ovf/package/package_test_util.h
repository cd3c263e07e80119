// Test helpers for the package tests: build tar archives in memory with libarchive's
// writer (ustar, pax, GNU), hand-craft raw headers for lies libarchive would not write,
// temp folders, and SHA digests. Test-only; never used by the library.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace vandra::ovf::testing {

enum class Format { Ustar, Pax, Gnu };

struct TarMember {
  TarMember(std::string n, std::string d, unsigned t = AE_IFREG, std::string l = {}, bool h = false)
      : name(std::move(n)), data(std::move(d)), type(t), link(std::move(l)), hardlink(h) {}
  std::string name;
  std::string data;
  unsigned type = AE_IFREG;
  std::string link;       // symlink target
  bool hardlink = false;  // link names a hard link target
};

inline std::string makeTar(const std::vector<TarMember>& members, Format format = Format::Pax) {
  struct archive* a = archive_write_new();
  switch (format) {
    case Format::Ustar:
      archive_write_set_format_ustar(a);
      break;
    case Format::Pax:
      archive_write_set_format_pax_restricted(a);
      break;
    case Format::Gnu:
      archive_write_set_format_gnutar(a);
      break;
  }
  archive_write_set_bytes_per_block(a, 10240);
  std::vector<char> buf(64U << 20);
  size_t used = 0;
  archive_write_open_memory(a, buf.data(), buf.size(), &used);
  for (const auto& m : members) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, 1700000000, 0);
    if (m.hardlink) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, m.link.c_str());
      archive_entry_set_size(e, 0);
    } else {
      archive_entry_set_filetype(e, m.type);
      if (m.type == AE_IFLNK) {
        archive_entry_set_symlink(e, m.link.c_str());
      }
      archive_entry_set_size(e, m.type == AE_IFREG ? static_cast<la_int64_t>(m.data.size()) : 0);
    }
    archive_write_header(a, e);
    if (m.type == AE_IFREG && !m.hardlink && !m.data.empty()) {
      archive_write_data(a, m.data.data(), m.data.size());
    }
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return std::string(buf.data(), used);
}

/// A raw 512-byte ustar header with an arbitrary size field (octal, or GNU base-256 when it
/// does not fit), so tests can declare sizes the data does not have.
inline std::string rawHeader(const std::string& name, uint64_t size, char type = '0') {
  std::string h(512, '\0');
  std::copy(name.begin(), name.end(), h.begin());
  std::snprintf(h.data() + 100, 8, "%07o", 0644);
  std::snprintf(h.data() + 108, 8, "%07o", 0);
  std::snprintf(h.data() + 116, 8, "%07o", 0);
  if (size < (1ULL << 33)) {
    std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  } else {
    h[124] = static_cast<char>(0x80);
    for (int i = 0; i < 8; ++i) {
      h[static_cast<size_t>(135 - i)] = static_cast<char>((size >> (8 * i)) & 0xFF);
    }
  }
  std::snprintf(h.data() + 136, 12, "%011o", 0);
  h[156] = type;
  std::copy_n("ustar", 6, h.begin() + 257);
  h[263] = '0';
  h[264] = '0';
  std::fill_n(h.begin() + 148, 8, ' ');
  unsigned sum = 0;
  for (const char c : h) {
    sum += static_cast<unsigned char>(c);
  }
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  h[155] = ' ';
  return h;
}

inline std::string digestHex(const std::string& data, const EVP_MD* md) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr);
  std::string hex;
  static constexpr char kDigits[] = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    hex.push_back(kDigits[out[i] >> 4U]);
    hex.push_back(kDigits[out[i] & 0xFU]);
  }
  return hex;
}
inline std::string sha256(const std::string& d) {
  return digestHex(d, EVP_sha256());
}
inline std::string sha1(const std::string& d) {
  return digestHex(d, EVP_sha1());
}

/// A fresh temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::filesystem::temp_directory_path() / "vandra-pkg-XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::string write(const std::string& name, const std::string& data) const {
    std::ofstream(file(name), std::ios::binary) << data;
    return file(name);
  }

 private:
  std::string path_;
};

inline std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const std::string kDescriptor =
    "<?xml version=\"1.0\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"/>\n";

}  // namespace vandra::ovf::testing

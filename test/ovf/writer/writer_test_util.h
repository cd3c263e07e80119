// Test helpers for the writer tests: temporary directories, small disk images made with
// qemu-img, a test CA and signer made with the openssl CLI, file reads. Test-only.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "vandra/common/subprocess.h"

namespace vandra::ovf::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                       "/vandra-writer-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) {
      path_ = buf.data();
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

/// Names in @p dir (not recursive), including hidden ones.
inline std::set<std::string> listDir(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    out.insert(e.path().filename().string());
  }
  return out;
}

inline void run(const std::vector<std::string>& argv) {
  auto r = runCapture(argv);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
}

/// A raw image of @p size bytes with a recognisable pattern in its first and last MiB.
inline void makeRawImage(const std::string& path, uint64_t size) {
  std::ofstream out(path, std::ios::binary);
  std::string chunk(1U << 20, '\0');
  for (size_t i = 0; i < chunk.size(); i += 4096) {
    chunk[i] = static_cast<char>('A' + (i / 4096) % 26);
  }
  out.write(chunk.data(), static_cast<std::streamsize>(std::min<uint64_t>(chunk.size(), size)));
  out.close();
  std::filesystem::resize_file(path, size);
}

struct TestPki {
  std::string ca_pem_path;
  std::string key_pem;   // signer key
  std::string cert_pem;  // signer certificate
};

/// A CA and a leaf signed by it, in @p dir.
inline TestPki makePki(const TempDir& dir) {
  TestPki p;
  const std::string ca_key = dir / "ca.key";
  p.ca_pem_path = dir / "ca.pem";
  run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out",
       p.ca_pem_path, "-days", "30", "-subj", "/CN=vandra test CA", "-addext",
       "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  spit(dir / "leaf.ext", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n");
  run({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir / "leaf.key", "-out",
       dir / "leaf.csr", "-subj", "/CN=vandra test signer"});
  run({"openssl", "x509", "-req", "-in", dir / "leaf.csr", "-CA", p.ca_pem_path, "-CAkey", ca_key,
       "-CAcreateserial", "-out", dir / "leaf.pem", "-days", "30", "-extfile", dir / "leaf.ext"});
  p.key_pem = slurp(dir / "leaf.key");
  p.cert_pem = slurp(dir / "leaf.pem");
  return p;
}

}  // namespace vandra::ovf::testing

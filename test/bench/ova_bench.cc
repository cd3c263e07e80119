// ova_bench: OVA read throughput of openPackage with SHA256 digest verification, side by
// side with `sha256sum` over the same file in the same run. Generates a 256 MiB OVA
// (descriptor, SHA256 manifest, pseudo-random disk) in a temp folder once; removes it at exit.
#include <archive.h>
#include <archive_entry.h>
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "vandra/common/subprocess.h"
#include "vandra/ovf/package.h"

namespace {

constexpr size_t kDiskBytes = 256U << 20;
const std::string kOvf =
    "<?xml version=\"1.0\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"/>\n";

std::string hex(const unsigned char* d, unsigned n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < n; ++i) {
    s.push_back(kDigits[d[i] >> 4U]);
    s.push_back(kDigits[d[i] & 0xFU]);
  }
  return s;
}

std::string sha256Hex(const std::string& data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), md.data(), &n, EVP_sha256(), nullptr);
  return hex(md.data(), n);
}

// The generated OVA, made once for all benchmarks.
class Fixture {
 public:
  Fixture() {
    std::string tmpl = std::filesystem::temp_directory_path() / "vandra-bench-XXXXXX";
    dir_ = ::mkdtemp(tmpl.data());
    path_ = dir_ + "/bench.ova";
    // Pseudo-random (xorshift) so nothing in the path can shortcut on zeros.
    std::string disk(kDiskBytes, '\0');
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i + 8 <= disk.size(); i += 8) {
      x ^= x << 13U;
      x ^= x >> 7U;
      x ^= x << 17U;
      std::memcpy(disk.data() + i, &x, 8);
    }
    const std::string mf = "SHA256(bench.ovf)= " + sha256Hex(kOvf) +
                           "\nSHA256(bench-disk1.vmdk)= " + sha256Hex(disk) + "\n";
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path_.c_str());
    for (const auto& [name, data] : {std::pair<std::string, const std::string*>{"bench.ovf", &kOvf},
                                     {"bench.mf", &mf},
                                     {"bench-disk1.vmdk", &disk}}) {
      struct archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, name.c_str());
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, static_cast<la_int64_t>(data->size()));
      archive_write_header(a, e);
      archive_write_data(a, data->data(), data->size());
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    size_ = std::filesystem::file_size(path_);
  }
  ~Fixture() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;
  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

 private:
  std::string dir_;
  std::string path_;
  uint64_t size_ = 0;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void report(benchmark::State& state, uint64_t bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.counters["MB/s"] =
      benchmark::Counter(static_cast<double>(bytes) / 1e6 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.counters["file_MiB"] = static_cast<double>(bytes) / (1U << 20);
}

void BM_OpenPackageVerifySha256(benchmark::State& state) {
  Fixture& f = fixture();
  const vandra::ovf::OpenOptions options;
  for (auto _ : state) {
    auto pkg = vandra::ovf::openPackage(f.path(), options);
    if (!pkg || !pkg->problems.empty()) {
      state.SkipWithError("openPackage reported a problem");
      return;
    }
    benchmark::DoNotOptimize(pkg->members.size());
  }
  report(state, f.size());
}

void BM_Sha256sumSubprocess(benchmark::State& state) {
  Fixture& f = fixture();
  for (auto _ : state) {
    auto out = vandra::runCapture({"sha256sum", f.path()});
    if (!out) {
      state.SkipWithError("sha256sum failed");
      return;
    }
    benchmark::DoNotOptimize(out->size());
  }
  report(state, f.size());
}

void BM_OpenPackageNoVerify(benchmark::State& state) {
  Fixture& f = fixture();
  vandra::ovf::OpenOptions options;
  options.verify_digests = false;
  for (auto _ : state) {
    auto pkg = vandra::ovf::openPackage(f.path(), options);
    benchmark::DoNotOptimize(pkg.has_value());
  }
  report(state, f.size());
}

}  // namespace

// Real time: sha256sum runs in a child, so process CPU time would not see it.
BENCHMARK(BM_OpenPackageVerifySha256)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3);
BENCHMARK(BM_Sha256sumSubprocess)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3);
BENCHMARK(BM_OpenPackageNoVerify)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1);

BENCHMARK_MAIN();

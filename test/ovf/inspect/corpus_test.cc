// The third-party OVF corpus (../shared/ovf-corpus, never copied into the repository): every
// descriptor there has an expected outcome in test/data/corpus/<path>.expected.json — a
// summary of the VmSpec (facts only, no third-party text) or the expected error, plus, for
// descriptors that come as a package with a manifest, the package-level problems. The test is
// skipped when the corpus is absent. A missing expected file is written as .actual.json and
// the test fails: expectations are reviewed by a person, never accepted automatically.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::ovf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<fs::path> corpusDir() {
  if (const char* env = std::getenv("VANDRA_OVF_CORPUS"); env != nullptr && *env != '\0') {
    if (!fs::is_directory(env)) {
      return std::nullopt;
    }
    return fs::path(env);
  }
  const fs::path beside = fs::path(VANDRA_SOURCE_DIR) / ".." / "shared" / "ovf-corpus";
  if (fs::is_directory(beside)) {
    return fs::canonical(beside);
  }
  return std::nullopt;
}

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

json problems(const std::vector<Error>& ps) {
  json out = json::array();
  for (const auto& p : ps) {
    out.push_back({{"code", toString(p.code)}, {"line", p.line ? json(*p.line) : json(nullptr)}});
  }
  return out;
}

// Facts a VmSpec has (counts, sizes, ids), not the descriptor's prose.
json summary(const VmSpec& spec) {
  json systems = json::array();
  for (const auto& vs : spec.virtual_systems) {
    json disks = json::array();
    for (const auto& d : vs.disks) {
      disks.push_back({{"id", d.id},
                       {"capacity_bytes", d.capacity_bytes},
                       {"format", d.format},
                       {"controller", d.controller},
                       {"unit", d.unit},
                       {"has_file", d.file.has_value()},
                       {"parent", d.parent ? json(*d.parent) : json(nullptr)}});
    }
    json nics = json::array();
    for (const auto& n : vs.nics) {
      nics.push_back({{"network", n.network},
                      {"model", n.model},
                      {"mac", n.mac ? json(*n.mac) : json(nullptr)}});
    }
    json controllers = json::array();
    for (const auto& c : vs.controllers) {
      controllers.push_back(c.id);
    }
    size_t properties = 0;
    for (const auto& p : vs.products) {
      properties += p.properties.size();
    }
    systems.push_back({{"id", vs.id},
                       {"vcpus", vs.vcpus},
                       {"cores_per_socket", vs.cores_per_socket},
                       {"memory_mib", vs.memory_mib},
                       {"firmware", toString(vs.firmware)},
                       {"os_cim_id", vs.os.cim_id},
                       {"os_family", vs.os.family},
                       {"hardware_family", vs.hardware_family},
                       {"controllers", controllers},
                       {"disks", disks},
                       {"nics", nics},
                       {"media", vs.media.size()},
                       {"products", vs.products.size()},
                       {"properties", properties},
                       {"eulas", vs.eulas.size()},
                       {"has_sla", vs.sla.has_value()}});
  }
  json options = json::array();
  for (const auto& o : spec.deployment_options) {
    options.push_back(o.id);
  }
  return {{"ovf_version", toString(spec.ovf_version)},
          {"configuration", spec.configuration},
          {"virtual_systems", systems},
          {"networks", spec.networks.size()},
          {"files", spec.files.size()},
          {"deployment_options", options},
          {"warnings", spec.warnings.size()}};
}

json outcome(const fs::path& file) {
  const std::string bytes = readFile(file);
  json out = {{"sha256", sha256Hex(bytes)}};
  auto r = readDescriptor(bytes, {});
  if (!r) {
    out["error"] = {{"code", toString(r.error().code)},
                    {"line", r.error().line ? json(*r.error().line) : json(nullptr)}};
  } else {
    out["spec"] = summary(r->spec);
    out["problems"] = problems(r->problems);
  }
  // Descriptors kept with their manifest form a package (disks were not kept, so those are
  // reported missing): check the package layer too, against a CA that signed none of them.
  const fs::path dir = file.parent_path();
  bool has_manifest = false;
  for (const auto& e : fs::directory_iterator(dir)) {
    has_manifest = has_manifest || e.path().extension() == ".mf";
  }
  if (has_manifest) {
    InspectOptions opts;
    opts.trust_store = std::string(VANDRA_TEST_DATA) + "/ca/unrelated-ca.pem";
    auto insp = inspectPackage(dir.string(), opts);
    if (!insp) {
      out["package"] = {{"error", toString(insp.error().code)}};
    } else {
      json codes = json::array();
      for (const auto& p : insp->problems) {
        codes.push_back(toString(p.code));
      }
      out["package"] = {{"problems", codes},
                        {"signature", toString(insp->package.signature.status)}};
    }
  }
  return out;
}

TEST(CorpusTest, EveryDescriptorHasAnExpectedOutcome) {
  auto dir = corpusDir();
  if (!dir) {
    GTEST_SKIP()
        << "OVF corpus not present (set VANDRA_OVF_CORPUS or put it at ../shared/ovf-corpus)";
  }
  const fs::path expected_root = fs::path(VANDRA_TEST_DATA) / "corpus";
  int checked = 0;
  std::vector<std::string> missing;
  for (const auto& e : fs::recursive_directory_iterator(*dir)) {
    if (!e.is_regular_file() || e.path().extension() != ".ovf") {
      continue;
    }
    const fs::path rel = fs::relative(e.path(), *dir);
    SCOPED_TRACE(rel.string());
    const json actual = outcome(e.path());
    const fs::path exp = expected_root / (rel.string() + ".expected.json");
    if (!fs::exists(exp)) {
      fs::create_directories(exp.parent_path());
      std::ofstream(expected_root / (rel.string() + ".actual.json")) << actual.dump(2) << "\n";
      missing.push_back(rel.string());
      continue;
    }
    const json expected = json::parse(readFile(exp));
    EXPECT_EQ(actual, expected) << "actual:\n" << actual.dump(2);
    ++checked;
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " corpus descriptors have no expected outcome; "
                               << ".actual.json files were written for review, first: "
                               << missing.front();
  EXPECT_GE(checked + static_cast<int>(missing.size()), 50) << "corpus looks incomplete";
}

}  // namespace
}  // namespace vandra::ovf

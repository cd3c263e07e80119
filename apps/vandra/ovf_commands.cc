#include "ovf_commands.h"

#include <unistd.h>

#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli_support.h"
#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/ovf/writer.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
using namespace vandra::ovf;

std::string humanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  std::ostringstream o;
  o << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << units[u];
  return o.str();
}

json packageJson(const Package& p) {
  json members = json::array();
  for (const auto& m : p.members) {
    members.push_back({{"name", m.name}, {"size", m.size}});
  }
  json sig = nullptr;
  if (p.signature.status != SignatureStatus::Unsigned) {
    sig = {{"status", toString(p.signature.status)},
           {"subject", p.signature.subject},
           {"issuer", p.signature.issuer},
           {"not_after", p.signature.not_after},
           {"algorithm", toString(p.signature.algorithm)}};
  }
  return {{"kind", p.kind == PackageKind::Ova ? "ova" : "folder"},
          {"path", p.path},
          {"descriptor", p.descriptor_name},
          {"members", members},
          {"manifest", p.manifest ? json(p.manifest->size()) : json(nullptr)},
          {"signature", sig}};
}

json problemsJson(const std::vector<Error>& problems) {
  json out = json::array();
  for (const auto& e : problems) {
    out.push_back({{"code", toString(e.code)},
                   {"line", e.line ? json(*e.line) : json(nullptr)},
                   {"message", e.describe()}});
  }
  return out;
}

std::string slaLine(const Sla& s) {
  std::ostringstream o;
  if (s.downtime_budget_ms) {
    o << "downtime <= " << *s.downtime_budget_ms << " ms; ";
  }
  if (!s.jurisdictions.empty()) {
    o << "jurisdictions ";
    for (size_t i = 0; i < s.jurisdictions.size(); ++i) {
      o << (i ? "," : "") << s.jurisdictions[i];
    }
    o << "; ";
  }
  if (s.max_rtt) {
    o << "rtt to " << s.max_rtt->location << " <= " << s.max_rtt->ms << " ms; ";
  }
  o << "encryption " << (s.encryption_in_transit ? "required" : "optional") << "; ";
  if (s.anti_affinity_group) {
    o << "anti-affinity " << *s.anti_affinity_group << "; ";
  }
  if (s.max_cost_per_hour) {
    o << "cost <= " << *s.max_cost_per_hour << " " << s.currency << "/h; ";
  }
  o << "mobility " << toString(s.mobility);
  if (s.availability_percent) {
    o << "; availability " << *s.availability_percent << " %";
  }
  if (s.max_migration_mbps) {
    o << "; migration <= " << *s.max_migration_mbps << " Mbit/s";
  }
  o << (s.required ? " (ovf:required)" : "");
  return o.str();
}

void printHuman(const Inspection& insp) {
  const auto& p = insp.package;
  const auto& s = insp.spec;
  std::cout << "Package   " << p.path << " (" << (p.kind == PackageKind::Ova ? "OVA" : "folder")
            << ", " << p.members.size() << " members)\n";
  std::cout << "Manifest  "
            << (p.manifest ? std::to_string(p.manifest->size()) + " entries" : "none") << "\n";
  std::cout << "Signature " << toString(p.signature.status);
  if (p.signature.status != SignatureStatus::Unsigned) {
    std::cout << " (" << p.signature.subject << ", expires " << p.signature.not_after << ")";
  }
  std::cout << "\nOVF       " << toString(s.ovf_version);
  if (!s.configuration.empty()) {
    std::cout << ", configuration '" << s.configuration << "'";
  }
  std::cout << "\n";
  for (const auto& vs : s.virtual_systems) {
    std::cout << "\nVM " << vs.name << " (id " << vs.id << ")"
              << (vs.collection.empty() ? "" : " in " + vs.collection) << "\n";
    std::cout << "  " << vs.vcpus << " vCPU, " << vs.memory_mib << " MiB, " << toString(vs.firmware)
              << ", os " << (vs.os.family.empty() ? "unknown" : vs.os.family);
    if (!vs.os.description.empty()) {
      std::cout << " (" << vs.os.description << ")";
    }
    std::cout << "\n";
    for (const auto& d : vs.disks) {
      std::cout << "  disk " << d.id << ": " << humanBytes(d.capacity_bytes) << " " << d.format
                << (d.file ? " from " + *d.file : " (blank)")
                << (d.controller.empty() ? ""
                                         : " on " + d.controller + ":" + std::to_string(d.unit))
                << "\n";
    }
    for (const auto& n : vs.nics) {
      std::cout << "  nic  " << n.model << " on '" << n.network << "'"
                << (n.mac ? " mac " + *n.mac : "") << "\n";
    }
    for (const auto& m : vs.media) {
      std::cout << "  " << (m.kind == MediaKind::Cdrom ? "cdrom" : "floppy")
                << (m.file ? " " + *m.file : " (empty)") << "\n";
    }
    std::cout << "  SLA  " << (vs.sla ? slaLine(*vs.sla) : "none") << "\n";
  }
  for (const auto& w : s.warnings) {
    std::cout << "warning: " << w << "\n";
  }
}

InspectOptions inspectOptions(bool lax, const std::string& configuration,
                              const std::string& trust_store, ProgressBar& bar) {
  InspectOptions o;
  o.lax = lax;
  o.configuration = configuration;
  o.trust_store = trust_store;
  o.progress = [&bar](uint64_t done, uint64_t total) {
    bar.update("verify", total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total));
  };
  return o;
}

struct CommonOpts {
  std::string package;
  bool json = false;
  bool lax = false;
  std::string configuration;
  std::string trust_store;
};

void addCommon(CLI::App* sub, CommonOpts& o, bool with_lax = true) {
  sub->add_option("package", o.package, "OVA file, OVF descriptor, or folder holding one")
      ->required();
  sub->add_flag("--json", o.json, "Print one JSON document");
  if (with_lax) {
    sub->add_flag("--lax", o.lax, "Turn package problems into warnings (as ovftool --lax)");
  }
  sub->add_option("--configuration", o.configuration,
                  "Deployment option to read (default: the package's)");
  sub->add_option("--trust-store", o.trust_store,
                  "CA file or folder that signatures must chain to");
}

// Opens and verifies the whole package (progress on a terminal); refuses an unsound one
// unless --lax.
Result<Inspection> openSound(const CommonOpts& o) {
  ProgressBar bar(!o.json);
  auto insp = inspectPackage(o.package, inspectOptions(o.lax, o.configuration, o.trust_store, bar));
  bar.finish();
  if (insp && !o.lax) {
    VANDRA_TRY(requireSound(*insp));
  }
  return insp;
}

int cmdInspect(const CommonOpts& o) {
  auto insp = openSound(o);
  if (!insp) {
    return reportError(o.package, insp.error());
  }
  if (o.json) {
    json j = toJson(insp->spec);
    j["package"] = packageJson(insp->package);
    std::cout << j.dump(2) << "\n";
  } else {
    printHuman(*insp);
  }
  return 0;
}

int cmdValidate(const CommonOpts& o) {
  ProgressBar bar(!o.json);
  auto insp = inspectPackage(o.package, inspectOptions(false, o.configuration, o.trust_store, bar));
  bar.finish();
  if (!insp) {
    if (o.json) {
      std::cout << json{{"valid", false},
                        {"problems", problemsJson({insp.error()})},
                        {"warnings", json::array()}}
                       .dump(2)
                << "\n";
      return exitCodeFor(insp.error().code);
    }
    return reportError(o.package, insp.error());
  }
  const bool valid = insp->problems.empty();
  if (o.json) {
    std::cout << json{{"valid", valid},
                      {"problems", problemsJson(insp->problems)},
                      {"warnings", insp->spec.warnings},
                      {"signature", toString(insp->package.signature.status)}}
                     .dump(2)
              << "\n";
  } else {
    for (const auto& e : insp->problems) {
      std::cout << "error: " << e.describe() << " [" << toString(e.code) << "]\n";
    }
    for (const auto& w : insp->spec.warnings) {
      std::cout << "warning: " << w << "\n";
    }
    std::cout << o.package << ": " << (valid ? "valid" : "INVALID") << " (" << insp->problems.size()
              << " problems, " << insp->spec.warnings.size() << " warnings, signature "
              << toString(insp->package.signature.status) << ")\n";
  }
  return valid ? 0 : 3;
}

int cmdImport(const CommonOpts& o, const std::string& dest, const std::string& vs) {
  ProgressBar bar(!o.json);
  ImportOptions io;
  io.inspect.lax = o.lax;
  io.inspect.configuration = o.configuration;
  io.inspect.trust_store = o.trust_store;
  io.virtual_system = vs;
  io.progress = [&bar](const std::string& stage, double f) { bar.update(stage, f); };
  auto r = importPackage(o.package, dest, io);
  bar.finish();
  if (!r) {
    return reportError(o.package, r.error());
  }
  if (o.json) {
    json disks = json::array();
    for (const auto& d : r->disks) {
      disks.push_back({{"vs", d.vs_id},
                       {"disk", d.disk_id},
                       {"path", d.path},
                       {"capacity_bytes", d.capacity_bytes}});
    }
    std::cout << json{{"result", "ok"}, {"disks", disks}, {"vmspec", dest + "/vmspec.json"}}.dump(2)
              << "\n";
  } else {
    for (const auto& d : r->disks) {
      std::cout << "disk " << d.vs_id << "/" << d.disk_id << " -> " << d.path << " ("
                << humanBytes(d.capacity_bytes) << ")\n";
    }
    std::cout << "VmSpec written to " << dest << "/vmspec.json\n";
  }
  return 0;
}

// --sign-key/--sign-cert name files; the writer takes their PEM text.
Result<void> loadSigner(const std::string& key_path, const std::string& cert_path, std::string& key,
                        std::string& cert) {
  if (key_path.empty() != cert_path.empty()) {
    return fail(ErrorCode::InvalidArgument, "--sign-key and --sign-cert go together");
  }
  if (key_path.empty()) {
    return {};
  }
  VANDRA_TRY_ASSIGN(key, readSmallFile(key_path, 1U << 20));
  VANDRA_TRY_ASSIGN(cert, readSmallFile(cert_path, 1U << 20));
  return {};
}

Result<VmSpec> loadSpec(const std::string& path) {
  VANDRA_TRY_ASSIGN(const std::string text, readSmallFile(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::InvalidArgument, "'" + path + "' is not valid JSON");
  }
  return vmSpecFromJson(j);
}

int cmdExport(const std::string& spec_path, const std::vector<std::string>& disks,
              const std::string& out, const std::string& version, bool folder,
              const std::string& name, const std::string& key, const std::string& cert,
              bool as_json) {
  auto spec = loadSpec(spec_path);
  if (!spec) {
    return reportError(spec_path, spec.error());
  }
  ExportOptions eo;
  eo.version = version == "2.0" ? WriteVersion::V2_0 : WriteVersion::V1_0;
  eo.ova = !folder;
  eo.name = name;
  if (auto r = loadSigner(key, cert, eo.sign_key, eo.sign_cert); !r) {
    return reportError("signing key", r.error());
  }
  for (const auto& d : disks) {
    const auto eq = d.find('=');
    if (eq == std::string::npos || eq == 0) {
      return reportError(
          "--disk", Error(ErrorCode::InvalidArgument, "Expected DISK_ID=IMAGE, got '" + d + "'"));
    }
    eo.disk_images[d.substr(0, eq)] = d.substr(eq + 1);
  }
  ProgressBar bar(!as_json);
  eo.progress = [&bar](const std::string& stage, double f) { bar.update(stage, f); };
  auto r = exportPackage(*spec, out, eo);
  bar.finish();
  if (!r) {
    return reportError(out, r.error());
  }
  if (as_json) {
    std::cout << json{{"result", "ok"}, {"path", out}}.dump() << "\n";
  } else {
    std::cout << "Wrote " << out << "\n";
  }
  return 0;
}

int cmdSlaShow(const CommonOpts& o, const std::string& vs) {
  // Like every command that opens a package, verify all of it first.
  auto insp = openSound(o);
  if (!insp) {
    return reportError(o.package, insp.error());
  }
  auto sla = readSla(insp->package.descriptor, vs);
  if (!sla) {
    return reportError(o.package, sla.error());
  }
  if (o.json) {
    std::cout << (*sla ? toJson(**sla) : json(nullptr)).dump(2) << "\n";
  } else {
    std::cout << (*sla ? slaLine(**sla) : std::string("no SLA")) << "\n";
  }
  return 0;
}

int cmdSlaEdit(const CommonOpts& o, const std::string& vs,
               const std::vector<std::string>& assignments, bool clear, const std::string& key,
               const std::string& cert) {
  std::optional<Sla> sla;
  if (!clear) {
    if (assignments.empty()) {
      return reportError("sla set",
                         Error(ErrorCode::InvalidArgument, "Give at least one FIELD=VALUE"));
    }
    // The current SLA is the base for the assignments; editPackageSla verifies the whole
    // package (digests, members) before it changes anything.
    auto insp = inspectPackage(o.package, {.lax = true,
                                           .configuration = "",
                                           .trust_store = o.trust_store,
                                           .verify_digests = false,
                                           .progress = {},
                                           .extra_trust = {}});
    if (!insp) {
      return reportError(o.package, insp.error());
    }
    auto current = readSla(insp->package.descriptor, vs);
    if (!current) {
      return reportError(o.package, current.error());
    }
    sla = current->value_or(Sla{});
    for (const auto& a : assignments) {
      const auto eq = a.find('=');
      if (eq == std::string::npos) {
        return reportError("sla set",
                           Error(ErrorCode::SlaInvalid, "Expected FIELD=VALUE, got '" + a + "'"));
      }
      if (auto r = applySlaAssignment(*sla, a.substr(0, eq), a.substr(eq + 1)); !r) {
        return reportError("sla set", r.error());
      }
    }
  }
  SlaEditOptions eo;
  eo.vs_id = vs;
  if (auto r = loadSigner(key, cert, eo.sign_key, eo.sign_cert); !r) {
    return reportError("signing key", r.error());
  }
  eo.lax = o.lax;
  eo.trust_store = o.trust_store;
  auto r = editPackageSla(o.package, sla, eo);
  if (!r) {
    return reportError(o.package, r.error());
  }
  if (o.json) {
    std::cout << json{{"result", "ok"},
                      {"sla", sla ? toJson(*sla) : json(nullptr)},
                      {"warnings", *r}}
                     .dump(2)
              << "\n";
  } else {
    for (const auto& w : *r) {
      std::cerr << "warning: " << w << "\n";
    }
    std::cout << (sla ? "SLA set: " + slaLine(*sla) : std::string("SLA removed")) << "\n";
  }
  return 0;
}

}  // namespace

void addOvfCommands(CLI::App& app, int& exit_code) {
  auto* ovf = app.add_subcommand("ovf", "Read, check, import, export and edit OVF/OVA packages");
  ovf->require_subcommand(1);

  static CommonOpts inspect_o;
  auto* inspect =
      ovf->add_subcommand("inspect", "Show the VmSpec of a package (verifies it fully)");
  addCommon(inspect, inspect_o);
  inspect->callback([&] { exit_code = cmdInspect(inspect_o); });

  static CommonOpts validate_o;
  auto* validate =
      ovf->add_subcommand("validate", "List every problem of a package; exit 0 only if sound");
  addCommon(validate, validate_o, false);
  validate->callback([&] { exit_code = cmdValidate(validate_o); });

  static CommonOpts import_o;
  static std::string import_dest;
  static std::string import_vs;
  auto* imp =
      ovf->add_subcommand("import", "Verify a package and convert its disks to qcow2 in a folder");
  addCommon(imp, import_o);
  imp->add_option("dest", import_dest, "Destination folder (created; must not hold an import)")
      ->required();
  imp->add_option("--vs", import_vs, "Only this virtual system");
  imp->callback([&] { exit_code = cmdImport(import_o, import_dest, import_vs); });

  static std::string ex_spec;
  static std::vector<std::string> ex_disks;
  static std::string ex_out;
  static std::string ex_version = "1.0";
  static bool ex_folder = false;
  static std::string ex_name;
  static std::string ex_key;
  static std::string ex_cert;
  static bool ex_json = false;
  auto* ex =
      ovf->add_subcommand("export", "Write a VmSpec and its disk images as OVA (or OVF folder)");
  ex->add_option("--spec", ex_spec, "VmSpec JSON (as printed by 'ovf inspect --json')")->required();
  ex->add_option("--disk", ex_disks, "DISK_ID=IMAGE, once per disk");
  ex->add_option("-o,--output", ex_out, "Output .ova file (or folder with --folder)")->required();
  ex->add_option("--ovf-version", ex_version, "1.0 (default) or 2.0")
      ->check(CLI::IsMember({"1.0", "2.0"}));
  ex->add_flag("--folder", ex_folder, "Write a folder with .ovf/.mf/.vmdk instead of one .ova");
  ex->add_option("--name", ex_name, "Base name of the descriptor (default: first VM's name)");
  ex->add_option("--sign-key", ex_key, "PEM private key to sign the manifest with");
  ex->add_option("--sign-cert", ex_cert, "PEM certificate (chain) of the signing key");
  ex->add_flag("--json", ex_json, "Print one JSON document");
  ex->callback([&] {
    exit_code = cmdExport(ex_spec, ex_disks, ex_out, ex_version, ex_folder, ex_name, ex_key,
                          ex_cert, ex_json);
  });

  auto* sla = ovf->add_subcommand("sla", "Show or edit the SLA section inside a package");
  sla->require_subcommand(1);
  static CommonOpts sla_o;
  static std::string sla_vs;
  static std::vector<std::string> sla_assign;
  static std::string sla_key;
  static std::string sla_cert;
  auto* show = sla->add_subcommand("show", "Print the SLA of a virtual system");
  addCommon(show, sla_o);
  show->add_option("--vs", sla_vs, "Virtual system id (default: the first)");
  show->callback([&] { exit_code = cmdSlaShow(sla_o, sla_vs); });

  auto* set = sla->add_subcommand(
      "set",
      "Set SLA fields in place: downtime-budget-ms=N jurisdictions=EU,SE max-rtt=LOC:MS "
      "encryption=required|optional anti-affinity-group=G max-cost-per-hour=X currency=EUR "
      "mobility=pinned|on-request|automatic availability=99.9 max-migration-mbps=N "
      "required=true|false");
  addCommon(set, sla_o);
  set->add_option("assignments", sla_assign, "FIELD=VALUE ...")->required();
  set->add_option("--vs", sla_vs, "Virtual system id (default: every one)");
  set->add_option("--sign-key", sla_key, "Re-sign with this PEM key (else a signature is removed)");
  set->add_option("--sign-cert", sla_cert, "PEM certificate for --sign-key");
  set->callback(
      [&] { exit_code = cmdSlaEdit(sla_o, sla_vs, sla_assign, false, sla_key, sla_cert); });

  auto* clear = sla->add_subcommand("clear", "Remove the SLA section in place");
  addCommon(clear, sla_o);
  clear->add_option("--vs", sla_vs, "Virtual system id (default: every one)");
  clear->add_option("--sign-key", sla_key,
                    "Re-sign with this PEM key (else a signature is removed)");
  clear->add_option("--sign-cert", sla_cert, "PEM certificate for --sign-key");
  clear->callback([&] { exit_code = cmdSlaEdit(sla_o, sla_vs, {}, true, sla_key, sla_cert); });
}

}  // namespace vandra::cli

// The descriptor reader (reader.h): deployment options, properties, References, DiskSection
// and NetworkSection.
#include <algorithm>
#include <map>
#include <set>

#include "os_types.h"
#include "ovf_names.h"
#include "reader.h"
#include "sla_section.h"
#include "units.h"

namespace vandra::ovf::reading {

Result<void> Reader::readDeploymentOptions(xmlNode* section) {
  requireInfo(section, "DeploymentOptionSection");
  for (xmlNode* c : children(section)) {
    if (!isOvf(c) || nameOf(c) != "Configuration") {
      continue;
    }
    DeploymentOption d;
    d.id = ovfAttr(c, "id").value_or("");
    if (d.id.empty()) {
      problem(ErrorCode::OvfInvalid, "Configuration without ovf:id", c);
      continue;
    }
    auto def = ovfAttr(c, "default");
    d.is_default = def && (*def == "true" || *def == "1");
    for (xmlNode* cc : children(c)) {
      if (isOvf(cc) && nameOf(cc) == "Label") {
        d.label = text(cc);
      } else if (isOvf(cc) && nameOf(cc) == "Description") {
        d.description = text(cc);
      }
    }
    if (!option_ids_.insert(d.id).second) {
      problem(ErrorCode::OvfReference, "Duplicate Configuration id '" + d.id + "'", c);
      continue;
    }
    spec_.deployment_options.push_back(std::move(d));
  }
  if (!options_.configuration.empty()) {
    const bool known = std::any_of(spec_.deployment_options.begin(), spec_.deployment_options.end(),
                                   [&](const auto& o) { return o.id == options_.configuration; });
    if (!known) {
      std::string list;
      for (const auto& o : spec_.deployment_options) {
        list += (list.empty() ? "" : ", ") + o.id;
      }
      return fail(
          ErrorCode::InvalidArgument,
          "Unknown deployment option '" + options_.configuration + "' (known: " + list + ")");
    }
    spec_.configuration = options_.configuration;
  } else if (!spec_.deployment_options.empty()) {
    // DSP0243: the default is the one marked ovf:default="true", else the first.
    spec_.configuration = spec_.deployment_options.front().id;
    for (const auto& o : spec_.deployment_options) {
      if (o.is_default) {
        spec_.configuration = o.id;
        break;
      }
    }
  }
  if (options_.configuration.empty() && spec_.deployment_options.empty()) {
    spec_.configuration.clear();
  }
  return {};
}

void Reader::collectProperties(xmlNode* n) {
  for (xmlNode* c : children(n)) {
    if (!isOvf(c)) {
      continue;
    }
    const std::string name = effectiveName(c);
    if (name == "ProductSection") {
      const std::string cls = ovfAttr(c, "class").value_or("");
      const std::string inst = ovfAttr(c, "instance").value_or("");
      forEachProperty(c, [&](xmlNode* p, const Property& prop) {
        (void)p;
        std::string full = prop.key;
        if (!cls.empty()) {
          full = cls + "." + full;
        }
        if (!inst.empty()) {
          full += "." + inst;
        }
        properties_[full] = prop.value;
        properties_.emplace(prop.key, prop.value);
      });
    } else {
      collectProperties(c);
    }
  }
}

std::optional<uint64_t> Reader::parseSize(const std::string& raw, const std::string& units,
                                          const xmlNode* at, const std::string& what) {
  std::string value = raw;
  // ${name} refers to a ProductSection property (DSP0243 9.1: capacity may be a reference).
  if (value.size() > 3 && value.starts_with("${") && value.back() == '}') {
    const std::string key = value.substr(2, value.size() - 3);
    auto it = properties_.find(key);
    if (it == properties_.end()) {
      problem(ErrorCode::OvfReference, what + " refers to unknown property '" + key + "'", at);
      return std::nullopt;
    }
    value = it->second;
  }
  auto v = parseUint(value);
  if (!v) {
    problem(ErrorCode::OvfValue, what + " '" + raw + "' is not a whole number", at);
    return std::nullopt;
  }
  uint64_t mult = 1;
  if (!units.empty()) {
    auto m = bytesPerUnit(units);
    if (!m) {
      problem(ErrorCode::OvfValue, what + " has unknown allocation units '" + units + "'", at);
      return std::nullopt;
    }
    mult = *m;
  }
  auto total = checkedMul(*v, mult);
  if (!total) {
    problem(ErrorCode::OvfValue, what + " overflows 64 bits", at);
  }
  return total;
}

bool Reader::unsafeHref(const std::string& href) {
  if (href.empty() || href.front() == '/' || href.find('\\') != std::string::npos) {
    return true;
  }
  size_t i = 0;
  while (i <= href.size()) {
    const size_t j = href.find('/', i);
    const std::string part = href.substr(i, j == std::string::npos ? std::string::npos : j - i);
    if (part == "..") {
      return true;
    }
    if (j == std::string::npos) {
      break;
    }
    i = j + 1;
  }
  return false;
}

void Reader::readReferences(xmlNode* refs) {
  std::set<std::string> hrefs;
  for (xmlNode* c : children(refs)) {
    if (!isOvf(c) || nameOf(c) != "File") {
      continue;
    }
    FileSpec f;
    f.id = ovfAttr(c, "id").value_or("");
    f.href = ovfAttr(c, "href").value_or("");
    if (f.id.empty() || f.href.empty()) {
      problem(ErrorCode::OvfInvalid, "File needs ovf:id and ovf:href", c);
      continue;
    }
    if (files_.count(f.id) != 0) {
      problem(ErrorCode::OvfReference, "Duplicate File id '" + f.id + "'", c);
      continue;
    }
    if (auto s = ovfAttr(c, "size")) {
      f.size = parseSize(*s, "", c, "File '" + f.id + "' size");
    }
    f.compression = ovfAttr(c, "compression").value_or("");
    if (!f.compression.empty() && f.compression != "gzip" && f.compression != "identity") {
      problem(ErrorCode::OvfValue,
              "File '" + f.id + "' has unsupported compression '" + f.compression + "'", c);
    }
    if (f.compression == "identity") {
      f.compression.clear();
    }
    if (auto cs = ovfAttr(c, "chunkSize")) {
      f.chunk_size = parseSize(*cs, "", c, "File '" + f.id + "' chunkSize");
      if (f.chunk_size && *f.chunk_size == 0) {
        problem(ErrorCode::OvfValue, "File '" + f.id + "' has chunkSize 0", c);
      }
    }
    const std::string scheme = lower(f.href.substr(0, f.href.find(':') + 1));
    if (scheme == "http:" || scheme == "https:" || scheme == "ftp:" || scheme == "file:") {
      warn("File '" + f.id + "' refers to '" + f.href +
               "' outside the package; vandra never fetches it",
           c);
    } else if (unsafeHref(f.href)) {
      problem(ErrorCode::OvfReference,
              "File '" + f.id + "' href '" + f.href + "' leaves the package folder", c);
    } else if (!hrefs.insert(f.href).second) {
      problem(ErrorCode::OvfReference, "Two File elements name '" + f.href + "'", c);
    }
    files_[f.id] = f;
    file_by_href_.emplace(f.href, f.id);
    spec_.files.push_back(std::move(f));
  }
}

void Reader::readDisks(xmlNode* section) {
  requireInfo(section, "DiskSection");
  for (xmlNode* c : children(section)) {
    if (!isOvf(c) || nameOf(c) != "Disk") {
      continue;
    }
    DiskEntry d;
    d.line = lineOf(c);
    d.spec.id = ovfAttr(c, "diskId").value_or("");
    if (d.spec.id.empty()) {
      problem(ErrorCode::OvfInvalid, "Disk without ovf:diskId", c);
      continue;
    }
    if (disks_.count(d.spec.id) != 0) {
      problem(ErrorCode::OvfReference, "Duplicate Disk id '" + d.spec.id + "'", c);
      continue;
    }
    auto cap = ovfAttr(c, "capacity");
    if (!cap && ovirt_) {
      if (auto gib = ovfAttr(c, "size")) {
        d.spec.capacity_bytes =
            parseSize(*gib, "byte * 2^30", c, "Disk '" + d.spec.id + "' size").value_or(0);
      } else {
        warn("oVirt disk '" + d.spec.id + "' states no size (a LUN or external disk)", c);
      }
    } else if (!cap) {
      problem(ErrorCode::OvfInvalid, "Disk '" + d.spec.id + "' has no ovf:capacity", c);
    } else {
      auto v = parseSize(*cap, ovfAttr(c, "capacityAllocationUnits").value_or(""), c,
                         "Disk '" + d.spec.id + "' capacity");
      d.spec.capacity_bytes = v.value_or(0);
    }
    if (auto ps = ovfAttr(c, "populatedSize")) {
      d.spec.populated_bytes = parseSize(*ps, "", c, "Disk '" + d.spec.id + "' populatedSize");
      if (d.spec.populated_bytes && *d.spec.populated_bytes > d.spec.capacity_bytes &&
          d.spec.capacity_bytes != 0) {
        problem(ErrorCode::OvfValue,
                "Disk '" + d.spec.id + "' populatedSize " +
                    std::to_string(*d.spec.populated_bytes) + " is larger than its capacity " +
                    std::to_string(d.spec.capacity_bytes),
                c);
      }
    }
    d.spec.format_uri = ovfAttr(c, "format").value_or("");
    d.spec.format = diskFormatFromUri(d.spec.format_uri);
    d.file_ref = ovfAttr(c, "fileRef").value_or("");
    if (!d.file_ref.empty()) {
      auto it = files_.find(d.file_ref);
      if (it == files_.end()) {
        // oVirt writes the File's href instead of its id.
        if (file_by_href_.count(d.file_ref) != 0) {
          d.spec.file = d.file_ref;
        } else {
          problem(ErrorCode::OvfReference,
                  "Disk '" + d.spec.id + "' refers to unknown File '" + d.file_ref + "'", c);
        }
      } else {
        d.spec.file = it->second.href;
      }
    }
    if (auto parent = ovfAttr(c, "parentRef"); parent && !parent->empty()) {
      d.spec.parent = *parent;
    }
    if (!d.file_ref.empty()) {
      disk_by_file_.emplace(d.file_ref, d.spec.id);
    }
    if (d.spec.file) {
      disk_by_file_.emplace(*d.spec.file, d.spec.id);
    }
    if (d.spec.parent) {
      parent_disks_.insert(*d.spec.parent);
    }
    disks_[d.spec.id] = d;
    disk_order_.push_back(d.spec.id);
  }
  for (const auto& id : disk_order_) {
    const auto& d = disks_[id];
    if (d.spec.parent && disks_.count(*d.spec.parent) == 0) {
      problem(ErrorCode::OvfReference,
              "Disk '" + id + "' has unknown parentRef '" + *d.spec.parent + "'", nullptr);
      problems_.back().atLine(d.line);
    }
  }
}

void Reader::readNetworks(xmlNode* section) {
  requireInfo(section, "NetworkSection");
  for (xmlNode* c : children(section)) {
    if (!isOvf(c) || nameOf(c) != "Network") {
      continue;
    }
    NetworkSpec n;
    n.name = ovfAttr(c, "name").value_or("");
    if (n.name.empty()) {
      problem(ErrorCode::OvfInvalid, "Network without ovf:name", c);
      continue;
    }
    for (xmlNode* cc : children(c)) {
      if (isOvf(cc) && nameOf(cc) == "Description") {
        n.description = text(cc);
      }
    }
    if (!network_names_.insert(n.name).second) {
      problem(ErrorCode::OvfReference, "Duplicate Network name '" + n.name + "'", c);
      continue;
    }
    spec_.networks.push_back(std::move(n));
  }
}

}  // namespace vandra::ovf::reading

#include "sla_section.h"

#include <charconv>
#include <cmath>

#include "ovf_names.h"
#include "vandra/ovf/descriptor_reader.h"
#include "xml_document.h"

namespace vandra::ovf {
namespace {

using xml::attr;
using xml::children;
using xml::nameOf;
using xml::nsOf;
using xml::text;

const xmlChar* X(std::string_view s) {
  return reinterpret_cast<const xmlChar*>(s.data());
}

Unexpected badField(std::string_view field, const std::string& value, const xmlNode* at,
                    std::string_view why) {
  Error e(ErrorCode::SlaInvalid,
          "SLA field '" + std::string(field) + "' value '" + value + "': " + std::string(why));
  e.atLine(xml::lineOf(at));
  return fail(std::move(e));
}

std::string fmtDouble(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, p) : std::string("0");
}

}  // namespace

Result<Sla> readSlaSection(xmlNode* section, std::string_view envelope_ns) {
  Sla sla;
  auto req = attr(section, envelope_ns, "required");
  sla.required = !req || (*req != "false" && *req != "0");
  const std::string ns(kSlaNamespace);
  for (xmlNode* c : children(section)) {
    if (nsOf(c) != kSlaNamespace) {
      continue;  // ovf:Info
    }
    const std::string_view n = nameOf(c);
    const std::string v = text(c);
    Result<void> r;
    if (n == "DowntimeBudgetMs") {
      r = applySlaAssignment(sla, "downtime-budget-ms", v);
    } else if (n == "Jurisdictions") {
      for (xmlNode* j : children(c)) {
        if (nsOf(j) == kSlaNamespace && nameOf(j) == "Jurisdiction") {
          sla.jurisdictions.push_back(text(j));
        }
      }
      r = validateSla(sla);
    } else if (n == "MaxRtt") {
      const std::string loc = attr(c, ns, "location").value_or("");
      const std::string ms = attr(c, ns, "ms").value_or("");
      r = applySlaAssignment(sla, "max-rtt", loc + ":" + ms);
    } else if (n == "EncryptionInTransit") {
      r = applySlaAssignment(sla, "encryption", v);
    } else if (n == "AntiAffinityGroup") {
      r = applySlaAssignment(sla, "anti-affinity-group", v);
    } else if (n == "MaxCostPerHour") {
      r = applySlaAssignment(sla, "currency", attr(c, ns, "currency").value_or("EUR"));
      if (r) {
        r = applySlaAssignment(sla, "max-cost-per-hour", v);
      }
    } else if (n == "Mobility") {
      r = applySlaAssignment(sla, "mobility", v);
    } else if (n == "Availability") {
      r = applySlaAssignment(sla, "availability", v);
    } else if (n == "MaxMigrationMbps") {
      r = applySlaAssignment(sla, "max-migration-mbps", v);
    } else if (n == "PostCopy") {
      r = applySlaAssignment(sla, "post-copy", v);
    } else {
      return badField(n, v, c, "unknown element in SlaSection (this vandra knows schema 1)");
    }
    if (!r) {
      Error e = r.error();
      e.atLine(xml::lineOf(c));
      return fail(std::move(e));
    }
  }
  VANDRA_TRY(validateSla(sla));
  return sla;
}

namespace {

// Attributes cannot live in a default namespace, so ovf:required needs a prefixed
// declaration of the envelope namespace; reuse one or declare one on the root.
xmlNs* prefixedNs(xmlNode* root, std::string_view uri, const char* wanted_prefix) {
  for (xmlNs* ns = root->nsDef; ns != nullptr; ns = ns->next) {
    if (ns->prefix != nullptr && ns->href != nullptr &&
        std::string_view(reinterpret_cast<const char*>(ns->href)) == uri) {
      return ns;
    }
  }
  std::string prefix = wanted_prefix;
  for (int i = 1; xmlSearchNs(root->doc, root, X(prefix)) != nullptr; ++i) {
    prefix = std::string(wanted_prefix) + std::to_string(i);
  }
  return xmlNewNs(root, reinterpret_cast<const xmlChar*>(std::string(uri).c_str()),
                  reinterpret_cast<const xmlChar*>(prefix.c_str()));
}

void indent(xmlNode* parent, int level) {
  // Built in place: GCC 12 reports a false -Wrestrict for "\n" + std::string(...) at -O3.
  std::string ws(1 + static_cast<size_t>(level) * 2, ' ');
  ws[0] = '\n';
  xmlAddChild(parent, xmlNewText(reinterpret_cast<const xmlChar*>(ws.c_str())));
}

int depthOf(const xmlNode* n) {
  int d = 0;
  for (; n != nullptr && n->type == XML_ELEMENT_NODE; n = n->parent) {
    ++d;
  }
  return d;
}

}  // namespace

void appendSlaSection(xmlNode* vs, std::string_view envelope_ns, const Sla& sla) {
  xmlNode* root = xmlDocGetRootElement(vs->doc);
  xmlNs* ns = prefixedNs(root, kSlaNamespace, std::string(kSlaPrefix).c_str());
  xmlNs* ovf_attr = prefixedNs(root, envelope_ns, "ovf");
  xmlNs* ovf_elem = xmlSearchNsByHref(
      vs->doc, vs, reinterpret_cast<const xmlChar*>(std::string(envelope_ns).c_str()));
  const int level = depthOf(vs);
  // Keep the document readable: the section is indented like its siblings.
  if (xmlNode* last = xmlGetLastChild(vs);
      last != nullptr && last->type == XML_TEXT_NODE && xmlIsBlankNode(last)) {
    xmlUnlinkNode(last);
    xmlFreeNode(last);
  }
  indent(vs, level);
  xmlNode* sec = xmlNewChild(vs, ns, X(kSlaSectionName), nullptr);
  indent(vs, level - 1);
  xmlNewNsProp(sec, ovf_attr, X("required"), X(sla.required ? "true" : "false"));
  auto add = [&](const char* name, const std::string& value) {
    indent(sec, level + 1);
    return xmlNewTextChild(sec, ns, X(name), reinterpret_cast<const xmlChar*>(value.c_str()));
  };
  indent(sec, level + 1);
  xmlNewTextChild(sec, ovf_elem, X("Info"), X("vandra service-level agreement"));
  if (sla.downtime_budget_ms) {
    add("DowntimeBudgetMs", std::to_string(*sla.downtime_budget_ms));
  }
  if (!sla.jurisdictions.empty()) {
    indent(sec, level + 1);
    xmlNode* js = xmlNewChild(sec, ns, X("Jurisdictions"), nullptr);
    for (const auto& j : sla.jurisdictions) {
      indent(js, level + 2);
      xmlNewTextChild(js, ns, X("Jurisdiction"), reinterpret_cast<const xmlChar*>(j.c_str()));
    }
    indent(js, level + 1);
  }
  if (sla.max_rtt) {
    indent(sec, level + 1);
    xmlNode* r = xmlNewChild(sec, ns, X("MaxRtt"), nullptr);
    xmlNewNsProp(r, ns, X("location"),
                 reinterpret_cast<const xmlChar*>(sla.max_rtt->location.c_str()));
    xmlNewNsProp(r, ns, X("ms"),
                 reinterpret_cast<const xmlChar*>(std::to_string(sla.max_rtt->ms).c_str()));
  }
  add("EncryptionInTransit", sla.encryption_in_transit ? "required" : "optional");
  if (sla.anti_affinity_group) {
    add("AntiAffinityGroup", *sla.anti_affinity_group);
  }
  if (sla.max_cost_per_hour) {
    xmlNode* c = add("MaxCostPerHour", fmtDouble(*sla.max_cost_per_hour));
    xmlNewNsProp(c, ns, X("currency"), reinterpret_cast<const xmlChar*>(sla.currency.c_str()));
  }
  add("Mobility", std::string(toString(sla.mobility)));
  if (sla.availability_percent) {
    add("Availability", fmtDouble(*sla.availability_percent));
  }
  if (sla.max_migration_mbps) {
    add("MaxMigrationMbps", std::to_string(*sla.max_migration_mbps));
  }
  if (sla.post_copy_allowed) {  // absent means never: descriptors without it stay as they were
    add("PostCopy", "allowed");
  }
  indent(sec, level);
}

namespace {

// Calls @p f on every VirtualSystem element (also inside collections, and 0.9's Content
// form) in document order.
template <class F>
void forEachVirtualSystem(xmlNode* n, std::string_view env_ns, F&& f) {
  for (xmlNode* c : children(n)) {
    if (nsOf(c) != env_ns && !nsOf(c).empty()) {
      continue;
    }
    std::string name(nameOf(c));
    if (name == "Content") {
      if (auto t = attr(c, names::kXsi, "type")) {
        auto q = xml::resolveQName(c, *t);
        if (q && q->first == env_ns) {
          name = q->second.substr(0, q->second.size() >= 5 ? q->second.size() - 5 : 0);
        }
      }
    }
    if (name == "VirtualSystem") {
      f(c);
    } else if (name == "VirtualSystemCollection") {
      forEachVirtualSystem(c, env_ns, f);
    }
  }
}

std::string idOf(xmlNode* vs, std::string_view env_ns) {
  if (auto v = attr(vs, env_ns, "id")) {
    return *v;
  }
  return attr(vs, "", "id").value_or("");
}

}  // namespace

Result<std::optional<Sla>> readSla(std::string_view xml_text, std::string_view vs_id) {
  VANDRA_TRY_ASSIGN(auto doc, xml::parse(xml_text));
  xmlNode* root = xmlDocGetRootElement(doc.get());
  const std::string env(nsOf(root));
  std::optional<Sla> out;
  bool found = false;
  Result<void> status;
  forEachVirtualSystem(root, env, [&](xmlNode* vs) {
    if (found || (!vs_id.empty() && idOf(vs, env) != vs_id)) {
      return;
    }
    found = true;
    for (xmlNode* c : children(vs)) {
      if (nsOf(c) == kSlaNamespace && nameOf(c) == kSlaSectionName) {
        auto s = readSlaSection(c, env);
        if (!s) {
          status = fail(s.error());
        } else {
          out = *s;
        }
      }
    }
  });
  VANDRA_TRY(status);
  if (!found) {
    return fail(ErrorCode::NotFound, vs_id.empty()
                                         ? std::string("Descriptor has no VirtualSystem")
                                         : "No VirtualSystem with id '" + std::string(vs_id) + "'");
  }
  return out;
}

Result<std::string> rewriteSla(std::string_view xml_text, std::string_view vs_id,
                               const std::optional<Sla>& sla) {
  if (sla) {
    VANDRA_TRY(validateSla(*sla));
  }
  VANDRA_TRY_ASSIGN(auto doc, xml::parse(xml_text));
  xmlNode* root = xmlDocGetRootElement(doc.get());
  const std::string env(nsOf(root));
  if (!names::versionOf(env, "", "")) {
    return fail(ErrorCode::OvfInvalid, "Root element is not an OVF Envelope");
  }
  int matched = 0;
  forEachVirtualSystem(root, env, [&](xmlNode* vs) {
    if (!vs_id.empty() && idOf(vs, env) != vs_id) {
      return;
    }
    ++matched;
    for (xmlNode* c : children(vs)) {
      if (nsOf(c) == kSlaNamespace && nameOf(c) == kSlaSectionName) {
        // Drop the whitespace text before it too, so repeated edits do not pile up blanks.
        if (c->prev != nullptr && c->prev->type == XML_TEXT_NODE && xmlIsBlankNode(c->prev)) {
          xmlNode* ws = c->prev;
          xmlUnlinkNode(ws);
          xmlFreeNode(ws);
        }
        xmlUnlinkNode(c);
        xmlFreeNode(c);
      }
    }
    if (sla) {
      appendSlaSection(vs, env, *sla);
    }
  });
  if (matched == 0) {
    return fail(ErrorCode::NotFound, vs_id.empty()
                                         ? std::string("Descriptor has no VirtualSystem")
                                         : "No VirtualSystem with id '" + std::string(vs_id) + "'");
  }
  return xml::serialise(doc.get());
}

}  // namespace vandra::ovf

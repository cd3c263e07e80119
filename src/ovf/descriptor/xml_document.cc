#include "xml_document.h"

#include <libxml/parser.h>
#include <libxml/xmlIO.h>
#include <libxml/xmlerror.h>

#include <mutex>

#include "vandra/ovf/descriptor_reader.h"

namespace vandra::ovf::xml {
namespace {

// libxml2 would print every error to stderr and could fetch external entities through its
// default loader; both are process-wide, so they are replaced once, here.
void silentError(void* /*ctx*/, xmlErrorPtr /*err*/) {}
xmlParserInputPtr refuseEntityLoader(const char* /*url*/, const char* /*id*/,
                                     xmlParserCtxtPtr /*ctxt*/) {
  return nullptr;
}
void initOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    xmlInitParser();
    xmlSetExternalEntityLoader(refuseEntityLoader);
  });
}

bool startsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// Looks at the prolog (BOM, XML declaration, comments, processing instructions) and
// refuses a document type declaration before libxml2 sees it: a DTD is the only way to
// declare entities, so without one there is no entity expansion and no external entity.
Result<void> refuseDoctype(std::string_view s) {
  size_t i = 0;
  if (startsWith(s, "\xEF\xBB\xBF")) {
    i = 3;
  }
  while (i < s.size()) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
      continue;
    }
    const std::string_view rest = s.substr(i);
    if (startsWith(rest, "<?")) {
      const size_t end = rest.find("?>");
      if (end == std::string_view::npos) {
        return {};
      }
      i += end + 2;
    } else if (startsWith(rest, "<!--")) {
      const size_t end = rest.find("-->");
      if (end == std::string_view::npos) {
        return {};
      }
      i += end + 3;
    } else if (startsWith(rest, "<!")) {
      int line = 1;
      for (size_t k = 0; k < i; ++k) {
        line += s[k] == '\n' ? 1 : 0;
      }
      return fail(Error(ErrorCode::XmlForbidden,
                        "Document type declarations (DTD, entities) are not allowed in an OVF "
                        "descriptor")
                      .atLine(line));
    } else {
      return {};  // root element or garbage: libxml2 decides
    }
  }
  return {};
}

Result<void> checkShape(const xmlNode* n, int depth, size_t& count) {
  for (; n != nullptr; n = n->next) {
    if (n->type == XML_ENTITY_REF_NODE || n->type == XML_ENTITY_DECL || n->type == XML_DTD_NODE) {
      return fail(Error(ErrorCode::XmlForbidden, "Entity references are not allowed")
                      .atLine(static_cast<int>(xmlGetLineNo(n))));
    }
    if (n->type != XML_ELEMENT_NODE) {
      continue;
    }
    if (++count > kMaxXmlElements) {
      return fail(ErrorCode::LimitExceeded,
                  "Descriptor has more than " + std::to_string(kMaxXmlElements) + " elements");
    }
    if (depth > kMaxXmlDepth) {
      return fail(Error(ErrorCode::LimitExceeded, "Descriptor nests deeper than " +
                                                      std::to_string(kMaxXmlDepth) + " elements")
                      .atLine(static_cast<int>(xmlGetLineNo(n))));
    }
    VANDRA_TRY(checkShape(n->children, depth + 1, count));
  }
  return {};
}

struct CtxtDeleter {
  void operator()(xmlParserCtxt* c) const { xmlFreeParserCtxt(c); }
};

}  // namespace

Result<DocPtr> parse(std::string_view bytes) {
  initOnce();
  if (bytes.size() > kMaxDescriptorBytes) {
    return fail(ErrorCode::LimitExceeded, "Descriptor is " + std::to_string(bytes.size()) +
                                              " bytes; the limit is " +
                                              std::to_string(kMaxDescriptorBytes));
  }
  VANDRA_TRY(refuseDoctype(bytes));
  std::unique_ptr<xmlParserCtxt, CtxtDeleter> ctxt(xmlNewParserCtxt());
  if (!ctxt) {
    return fail(ErrorCode::Internal, "Cannot create XML parser");
  }
  // Errors are read from the context after parsing, not printed.
  ctxt->sax->serror = silentError;
  // No NOENT (no entity substitution), no DTDLOAD/DTDATTR/DTDVALID, NONET, no HUGE: libxml2
  // then also applies its own depth and text-size limits.
  const int options = XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_NOWARNING | XML_PARSE_NOERROR;
  DocPtr doc(xmlCtxtReadMemory(ctxt.get(), bytes.data(), static_cast<int>(bytes.size()),
                               "descriptor.ovf", nullptr, options));
  // nsWellFormed: an element or attribute uses a prefix no xmlns declares. Such a name has
  // no namespace URI, so it could never be matched by URI: refuse the document.
  if (!doc || !ctxt->wellFormed || !ctxt->nsWellFormed) {
    const xmlError* err = xmlCtxtGetLastError(ctxt.get());
    std::string msg = "Descriptor is not well-formed XML";
    int line = 0;
    if (err != nullptr && err->message != nullptr) {
      std::string m = err->message;
      while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) {
        m.pop_back();
      }
      msg += ": " + m;
      line = err->line;
    }
    Error e(ErrorCode::XmlMalformed, msg);
    if (line > 0) {
      e.atLine(line);
    }
    return fail(std::move(e));
  }
  if (doc->intSubset != nullptr || doc->extSubset != nullptr) {
    return fail(ErrorCode::XmlForbidden, "Document type declarations are not allowed");
  }
  size_t count = 0;
  VANDRA_TRY(checkShape(xmlDocGetRootElement(doc.get()), 1, count));
  return doc;
}

std::string serialise(xmlDoc* doc) {
  xmlChar* buf = nullptr;
  int size = 0;
  xmlDocDumpFormatMemoryEnc(doc, &buf, &size, "UTF-8", 0);
  std::string out(reinterpret_cast<const char*>(buf), static_cast<size_t>(size));
  xmlFree(buf);
  return out;
}

std::string_view nsOf(const xmlNode* n) {
  if (n == nullptr || n->ns == nullptr || n->ns->href == nullptr) {
    return {};
  }
  return reinterpret_cast<const char*>(n->ns->href);
}

std::string_view nameOf(const xmlNode* n) {
  return n == nullptr || n->name == nullptr ? std::string_view{}
                                            : reinterpret_cast<const char*>(n->name);
}

int lineOf(const xmlNode* n) {
  return static_cast<int>(xmlGetLineNo(n));
}

std::vector<xmlNode*> children(const xmlNode* n) {
  std::vector<xmlNode*> out;
  if (n == nullptr) {
    return out;
  }
  for (xmlNode* c = n->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE) {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::string> attr(const xmlNode* n, std::string_view ns, std::string_view local) {
  if (n == nullptr) {
    return std::nullopt;
  }
  for (xmlAttr* a = n->properties; a != nullptr; a = a->next) {
    const std::string_view aname = reinterpret_cast<const char*>(a->name);
    const std::string_view ans = a->ns != nullptr && a->ns->href != nullptr
                                     ? reinterpret_cast<const char*>(a->ns->href)
                                     : "";
    if (aname == local && ans == ns) {
      xmlChar* v = xmlNodeListGetString(n->doc, a->children, 1);
      std::string out = v != nullptr ? reinterpret_cast<const char*>(v) : "";
      xmlFree(v);
      return out;
    }
  }
  return std::nullopt;
}

std::string text(const xmlNode* n) {
  xmlChar* v = xmlNodeGetContent(n);
  std::string s = v != nullptr ? reinterpret_cast<const char*>(v) : "";
  xmlFree(v);
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) {
    return {};
  }
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::optional<std::pair<std::string, std::string>> resolveQName(xmlNode* n,
                                                                std::string_view qname) {
  const size_t colon = qname.find(':');
  std::string prefix;
  std::string local(qname);
  if (colon != std::string_view::npos) {
    prefix = std::string(qname.substr(0, colon));
    local = std::string(qname.substr(colon + 1));
  }
  xmlNs* ns = xmlSearchNs(
      n->doc, n, prefix.empty() ? nullptr : reinterpret_cast<const xmlChar*>(prefix.c_str()));
  if (ns == nullptr || ns->href == nullptr) {
    return std::nullopt;
  }
  return std::make_pair(std::string(reinterpret_cast<const char*>(ns->href)), local);
}

}  // namespace vandra::ovf::xml

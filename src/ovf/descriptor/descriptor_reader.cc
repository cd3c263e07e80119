// OVF descriptor -> VmSpec. One pass over a libxml2 tree that xml_document.cc already
// checked for DTDs, size and depth. Every element is matched by namespace URI; OVF 0.9's
// <Section xsi:type="ovf:X_Type"> form is resolved to X. Faults that still allow a VmSpec
// are collected (never only the first) so that `vandra ovf validate` can list them all.
#include "vandra/ovf/descriptor_reader.h"

#include "reader.h"
#include "xml_document.h"

namespace vandra::ovf {

Result<DescriptorReadResult> readDescriptor(std::string_view xml_text, const ReadOptions& options) {
  VANDRA_TRY_ASSIGN(auto doc, xml::parse(xml_text));
  reading::Reader reader(doc.get(), options);
  return reader.run();
}

}  // namespace vandra::ovf

# Writes the OpenAPI document into a C++ source as a raw string (split in chunks: compilers
# limit one string literal's length).
file(READ ${IN} doc)
string(LENGTH "${doc}" len)
set(out "// Generated from docs/controller/openapi.json: do not edit.\n#include <string>\n\nnamespace vandra::controller {\nconst std::string& openApiDocument() {\n  static const std::string doc = std::string()")
set(pos 0)
while(pos LESS len)
  string(SUBSTRING "${doc}" ${pos} 8000 chunk)
  string(APPEND out "\n    + R\"vandraopenapi(${chunk})vandraopenapi\"")
  math(EXPR pos "${pos} + 8000")
endwhile()
string(APPEND out ";\n  return doc;\n}\n}  // namespace vandra::controller\n")
file(WRITE ${OUT} "${out}")

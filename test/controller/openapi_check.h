// Checks a real answer of the controller against docs/controller/openapi.json: the schema the
// document gives for that path, method and status (JSON Schema, validated with valijson).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "vandra/controller/http_api.h"

namespace vandra::controller::testing {

/// "" when @p body is what the document promises for @p method on @p path_template answering
/// @p status; otherwise what is wrong.
inline std::string checkAgainstOpenApi(const std::string& method, const std::string& path_template,
                                       int status, const std::string& body) {
  const auto doc = nlohmann::json::parse(openApiDocument());
  const auto p = nlohmann::json::json_pointer("/paths/" + [&] {
    std::string escaped;
    for (char c : path_template) {
      escaped += c == '/' ? std::string("~1") : std::string(1, c);
    }
    return escaped;
  }() + "/" + method + "/responses/" + std::to_string(status));
  if (!doc.contains(p)) {
    return "the document has no " + method + " " + path_template + " answering " +
           std::to_string(status);
  }
  nlohmann::json response = doc.at(p);
  if (response.contains("$ref")) {  // #/components/responses/Error
    const std::string ref = response["$ref"];
    response = doc.at(nlohmann::json::json_pointer(ref.substr(1)));
  }
  nlohmann::json schema_doc = response["content"]["application/json"]["schema"];
  schema_doc["components"] = doc["components"];
  const auto answer = nlohmann::json::parse(body, nullptr, false);
  if (answer.is_discarded()) {
    return "the answer is not JSON: " + body.substr(0, 200);
  }
  valijson::Schema schema;
  valijson::SchemaParser parser;
  valijson::adapters::NlohmannJsonAdapter schema_adapter(schema_doc);
  parser.populateSchema(schema_adapter, schema);
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(answer);
  if (validator.validate(schema, target, &results)) {
    return "";
  }
  std::string why;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) {
    std::string where;
    for (const auto& c : e.context) {
      where += c;
    }
    why += where + ": " + e.description + "\n";
  }
  return why + "in " + body.substr(0, 400);
}

}  // namespace vandra::controller::testing

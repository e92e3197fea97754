// tool_call_schema: {"anyOf": [{"type": "object", "properties": {"name": {"const": NAME},
// "arguments": PARAMETERS}, "required": ["name", "arguments"], "additionalProperties": false}, ...]}
#include "troupe/engine/tool_calls.hpp"

namespace troupe {
namespace {

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[(c >> 4) & 0xf];
      out += hex[c & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
}

bool is_blank_schema(const std::string& schema) {
  return schema.find_first_not_of(" \t\r\n{}") == std::string::npos;  // "{}" or nothing: any object
}

}  // namespace

bool constrains_tool_call(const request& req) {
  return !req.tools.empty() &&
         (req.tool_use.mode == tool_choice_mode::required || req.tool_use.mode == tool_choice_mode::named);
}

std::string tool_call_schema(const request& req) {
  std::string out = R"({"anyOf":[)";
  bool first = true;
  for (const tool_definition& t : req.tools) {
    if (req.tool_use.mode == tool_choice_mode::named && t.name != req.tool_use.name) continue;
    if (!first) out += ',';
    first = false;
    out += R"({"type":"object","properties":{"name":{"const":)";
    append_json_string(out, t.name);
    out += R"(},"arguments":)";
    out += is_blank_schema(t.parameters) ? std::string(R"({"type":"object"})") : t.parameters;
    out += R"(},"required":["name","arguments"],"additionalProperties":false})";
  }
  out += "]}";
  return out;
}

}  // namespace troupe

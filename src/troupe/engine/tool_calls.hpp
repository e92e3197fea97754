// Tool use on the request side: the grammar that makes the output a call when tool_choice
// asks for one (required: any of the tools; named: that one). The output is then one JSON
// object {"name": <a tool's name>, "arguments": <valid for its parameters schema>}.
#pragma once
#include <string>

#include "troupe/engine/request.hpp"

namespace troupe {

// Whether tool_choice constrains the output to a call.
bool constrains_tool_call(const request& req);

// The JSON Schema of a call the request allows (anyOf over its tools, or the named one).
std::string tool_call_schema(const request& req);

}  // namespace troupe

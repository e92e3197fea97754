// parse_tool_calls: simdjson reads each candidate; json_writer re-writes the arguments.
#include "troupe/net/tool_call_parse.hpp"

#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <random>

#include "troupe/net/json_read.hpp"
#include "troupe/net/json_writer.hpp"

namespace troupe::net {
namespace {

constexpr std::string_view open_tag = "<tool_call>";
constexpr std::string_view close_tag = "</tool_call>";

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

// Copies a DOM value into w as compact JSON.
void write_dom(json_writer& w, simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT:
      w.begin_object();
      for (auto field : simdjson::dom::object(e)) {
        w.key(field.key);
        write_dom(w, field.value);
      }
      w.end_object();
      break;
    case simdjson::dom::element_type::ARRAY:
      w.begin_array();
      for (auto x : simdjson::dom::array(e)) write_dom(w, x);
      w.end_array();
      break;
    case simdjson::dom::element_type::STRING: w.value(std::string_view(e)); break;
    case simdjson::dom::element_type::INT64: w.value(int64_t(e)); break;
    case simdjson::dom::element_type::UINT64: w.value(uint64_t(e)); break;
    case simdjson::dom::element_type::DOUBLE: w.value(double(e)); break;
    case simdjson::dom::element_type::BOOL: w.value(bool(e)); break;
    case simdjson::dom::element_type::NULL_VALUE: w.null(); break;
  }
}

// {"name": string, "arguments" | "parameters": object (or a string holding one)} -> a call.
std::optional<parsed_tool_call> read_call(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS || !doc.is_object()) return std::nullopt;
  std::string_view name;
  if (doc["name"].get(name) != simdjson::SUCCESS || name.empty()) return std::nullopt;
  simdjson::dom::element args;
  if (doc["arguments"].get(args) != simdjson::SUCCESS && doc["parameters"].get(args) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  parsed_tool_call call;
  call.name = std::string(name);
  if (args.is_string()) {
    call.arguments = std::string(std::string_view(args));  // already JSON text, as some models write it
  } else {
    json_writer w;
    write_dom(w, args);
    call.arguments = w.take();
  }
  return call;
}

}  // namespace

parsed_answer parse_tool_calls(std::string_view text) {
  parsed_answer out;
  if (text.find(open_tag) == std::string_view::npos) {
    const std::string_view whole = trim(text);
    if (!whole.empty() && whole.front() == '{') {
      if (auto call = read_call(whole)) {
        out.calls.push_back(std::move(*call));
        return out;
      }
    }
    out.content = std::string(text);
    return out;
  }
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find(open_tag, pos);
    if (open == std::string_view::npos) {
      out.content.append(text.substr(pos));
      break;
    }
    const size_t body = open + open_tag.size();
    const size_t close = text.find(close_tag, body);
    const size_t end = close == std::string_view::npos ? text.size() : close;
    auto call = read_call(trim(text.substr(body, end - body)));
    if (!call) {  // not a call: the block stays text
      const size_t next = close == std::string_view::npos ? text.size() : close + close_tag.size();
      out.content.append(text.substr(pos, next - pos));
      pos = next;
      continue;
    }
    out.content.append(text.substr(pos, open - pos));
    out.calls.push_back(std::move(*call));
    pos = close == std::string_view::npos ? text.size() : close + close_tag.size();
  }
  out.content = std::string(trim(out.content));
  return out;
}

size_t showable_prefix(std::string_view text) {
  const std::string_view opening = trim(text);
  if (!opening.empty() && opening.front() == '{') return 0;
  if (opening.empty()) return 0;  // only whitespace so far: it may still open a call
  size_t end = text.size();
  if (const size_t open = text.find(open_tag); open != std::string_view::npos) {
    end = open;
  } else {
    // Hold back a tail that may be the start of "<tool_call>".
    for (size_t n = std::min(open_tag.size() - 1, text.size()); n > 0; --n) {
      if (text.substr(text.size() - n) == open_tag.substr(0, n)) {
        end = text.size() - n;
        break;
      }
    }
  }
  // And trailing whitespace: before a call it is not part of the content.
  while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\n' || text[end - 1] == '\t' || text[end - 1] == '\r')) --end;
  return end;
}

std::string new_tool_call_id() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                                   (counter.fetch_add(1) << 32));
  static const char* hex = "0123456789abcdef";
  std::string id = "call_";
  for (int i = 0; i < 2; ++i) {
    uint64_t r = rng();
    for (int k = 0; k < 12; ++k, r >>= 4) id += hex[r & 0xf];
  }
  return id;
}

}  // namespace troupe::net

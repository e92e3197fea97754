// A small JSON reader for the golden files under tests/data (objects, arrays, strings with
// \u escapes, numbers, booleans, null); enough for test data, not a general parser.
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::test {

struct json {
  enum class type { null, boolean, number, string, array, object } kind = type::null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<json> items;
  std::map<std::string, json> fields;

  const json& operator[](const std::string& key) const {
    const auto it = fields.find(key);
    if (it == fields.end()) throw std::runtime_error("golden json: no key " + key);
    return it->second;
  }
  bool has(const std::string& key) const { return fields.count(key) != 0; }
  std::vector<int32_t> ints() const {
    std::vector<int32_t> out;
    for (const json& j : items) out.push_back(static_cast<int32_t>(j.num));
    return out;
  }

  static json parse(const std::string& text) {
    size_t pos = 0;
    json j = parse_value(text, pos);
    return j;
  }
  static json load(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    return parse(ss.str());
  }

 private:
  static void skip(const std::string& s, size_t& p) {
    while (p < s.size() && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) ++p;
  }
  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  static std::string parse_string(const std::string& s, size_t& p) {
    std::string out;
    ++p;  // opening quote
    while (p < s.size() && s[p] != '"') {
      if (s[p] != '\\') {
        out += s[p++];
        continue;
      }
      const char e = s[++p];
      ++p;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          uint32_t cp = std::stoul(s.substr(p, 4), nullptr, 16);
          p += 4;
          if (cp >= 0xD800 && cp < 0xDC00 && s.compare(p, 2, "\\u") == 0) {
            const uint32_t lo = std::stoul(s.substr(p + 2, 4), nullptr, 16);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
          }
          append_utf8(out, cp);
          break;
        }
        default: out += e;
      }
    }
    ++p;  // closing quote
    return out;
  }
  static json parse_value(const std::string& s, size_t& p) {
    skip(s, p);
    json j;
    if (s[p] == '{') {
      j.kind = type::object;
      ++p;
      skip(s, p);
      while (s[p] != '}') {
        std::string key = parse_string(s, p);
        skip(s, p);
        ++p;  // ':'
        j.fields[key] = parse_value(s, p);
        skip(s, p);
        if (s[p] == ',') ++p;
        skip(s, p);
      }
      ++p;
    } else if (s[p] == '[') {
      j.kind = type::array;
      ++p;
      skip(s, p);
      while (s[p] != ']') {
        j.items.push_back(parse_value(s, p));
        skip(s, p);
        if (s[p] == ',') ++p;
        skip(s, p);
      }
      ++p;
    } else if (s[p] == '"') {
      j.kind = type::string;
      j.str = parse_string(s, p);
    } else if (s.compare(p, 4, "true") == 0 || s.compare(p, 5, "false") == 0) {
      j.kind = type::boolean;
      j.b = s[p] == 't';
      p += j.b ? 4 : 5;
    } else if (s.compare(p, 4, "null") == 0) {
      p += 4;
    } else {
      j.kind = type::number;
      size_t used = 0;
      j.num = std::stod(s.substr(p, 32), &used);
      p += used;
    }
    return j;
  }
};

inline std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

}  // namespace troupe::test

// prefix_key: FNV-1a over the request's first prefix_key_chars bytes of text or token ids.
#include "troupe/engine/prefix_key.hpp"

#include <string>

namespace troupe {

namespace {

// FNV-1a, 64 bits.
struct fnv {
  uint64_t h = 1469598103934665603ull;
  size_t left = prefix_key_chars;
  void add(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size && left > 0; ++i, --left) {
      h ^= p[i];
      h *= 1099511628211ull;
    }
  }
  void add(const std::string& s) { add(s.data(), s.size()); }
};

}  // namespace

uint64_t prefix_key(const request& req) {
  fnv f;
  if (!req.messages.empty()) {
    f.add("chat", 4);
    f.left = prefix_key_chars;  // the tag does not count against the text
    for (const auto& m : req.messages) {
      f.add(m.role);
      f.add("\n", 1);
      f.add(m.content);
      f.add("\n", 1);
      if (f.left == 0) break;
    }
  } else if (!req.prompt_token_ids.empty()) {
    f.add("toks", 4);
    f.left = prefix_key_chars;
    for (int32_t t : req.prompt_token_ids) {
      if (f.left < sizeof t) break;
      f.add(&t, sizeof t);
    }
  } else {
    f.add("text", 4);
    f.left = prefix_key_chars;
    f.add(req.prompt);
  }
  return f.h;
}

}  // namespace troupe

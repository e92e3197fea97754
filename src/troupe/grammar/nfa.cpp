// The shared NFA of a grammar under construction, and code point ranges as UTF-8.
#include "troupe/grammar/nfa.hpp"

#include <algorithm>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe::grammar_internal {
namespace {

constexpr uint32_t surrogate_first = 0xD800;
constexpr uint32_t surrogate_last = 0xDFFF;
constexpr uint32_t max_code_point = 0x10FFFF;

int encode(uint32_t cp, uint8_t* out) {
  if (cp < 0x80) {
    out[0] = static_cast<uint8_t>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
    out[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
    out[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
  out[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  return 4;
}

struct byte_sequence {
  int length = 0;
  uint8_t lo[4];
  uint8_t hi[4];
};

// Splits [first, last] until every piece is a product of byte ranges: all code points in it
// encode to the same length, and every continuation position spans whole 6-bit blocks
// except where the leading bytes are equal.
void split_utf8(uint32_t first, uint32_t last, std::vector<byte_sequence>& out) {
  for (const uint32_t boundary : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (first <= boundary && boundary < last) {
      split_utf8(first, boundary, out);
      split_utf8(boundary + 1, last, out);
      return;
    }
  }
  uint8_t a[4];
  const int length = encode(first, a);
  for (int i = 1; i < length; ++i) {
    const uint32_t low_bits = (1u << (6 * i)) - 1;
    if ((first & ~low_bits) == (last & ~low_bits)) continue;
    if ((first & low_bits) != 0) {
      split_utf8(first, first | low_bits, out);
      split_utf8((first | low_bits) + 1, last, out);
      return;
    }
    if ((last & low_bits) != low_bits) {
      split_utf8(first, (last & ~low_bits) - 1, out);
      split_utf8(last & ~low_bits, last, out);
      return;
    }
  }
  byte_sequence seq;
  seq.length = length;
  encode(first, seq.lo);
  encode(last, seq.hi);
  out.push_back(seq);
}

}  // namespace

std::vector<code_point_range> normalize(std::vector<code_point_range> ranges) {
  std::vector<code_point_range> cut;
  for (code_point_range r : ranges) {
    r.last = std::min(r.last, max_code_point);
    if (r.first > r.last) continue;
    if (r.first < surrogate_first && r.last > surrogate_last) {
      cut.push_back({r.first, surrogate_first - 1});
      cut.push_back({surrogate_last + 1, r.last});
    } else if (r.first >= surrogate_first && r.last <= surrogate_last) {
      continue;
    } else if (r.first >= surrogate_first && r.first <= surrogate_last) {
      cut.push_back({surrogate_last + 1, r.last});
    } else if (r.last >= surrogate_first && r.last <= surrogate_last) {
      cut.push_back({r.first, surrogate_first - 1});
    } else {
      cut.push_back(r);
    }
  }
  std::sort(cut.begin(), cut.end(), [](auto x, auto y) { return x.first < y.first; });
  std::vector<code_point_range> merged;
  for (const code_point_range r : cut) {
    if (!merged.empty() && r.first <= merged.back().last + 1) {
      merged.back().last = std::max(merged.back().last, r.last);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

std::vector<code_point_range> complement(std::vector<code_point_range> ranges) {
  ranges = normalize(std::move(ranges));
  std::vector<code_point_range> out;
  uint32_t next = 0;
  for (const code_point_range r : ranges) {
    if (r.first > next) out.push_back({next, r.first - 1});
    next = r.last + 1;
  }
  if (next <= max_code_point) out.push_back({next, max_code_point});
  return normalize(std::move(out));
}

uint32_t nfa::add_state() {
  if (states_.size() >= max_states) {
    throw error(error_code::invalid_argument,
                "grammar too large: more than " + std::to_string(max_states) +
                    " automaton states (a long pattern, or a large maxLength / maxItems / "
                    "repetition count)");
  }
  states_.emplace_back();
  return static_cast<uint32_t>(states_.size() - 1);
}

void nfa::add_bytes(uint32_t from, uint8_t lo, uint8_t hi, uint32_t to) {
  states_[from].bytes.push_back({lo, hi, to});
}
void nfa::add_epsilon(uint32_t from, uint32_t to) { states_[from].epsilons.push_back(to); }
void nfa::add_call(uint32_t from, uint32_t rule, uint32_t to) {
  states_[from].calls.push_back({rule, to});
}

fragment nfa::empty() {
  const uint32_t s = add_state();
  return {s, s};
}

fragment nfa::byte_range(uint8_t lo, uint8_t hi) {
  const uint32_t a = add_state();
  const uint32_t b = add_state();
  add_bytes(a, lo, hi, b);
  return {a, b};
}

fragment nfa::literal(std::string_view bytes) {
  const uint32_t start = add_state();
  uint32_t at = start;
  for (const char c : bytes) {
    const uint32_t next = add_state();
    add_bytes(at, static_cast<uint8_t>(c), static_cast<uint8_t>(c), next);
    at = next;
  }
  return {start, at};
}

fragment nfa::call(uint32_t rule) {
  const uint32_t a = add_state();
  const uint32_t b = add_state();
  add_call(a, rule, b);
  return {a, b};
}

fragment nfa::code_points(const std::vector<code_point_range>& ranges) {
  std::vector<byte_sequence> sequences;
  for (const code_point_range r : ranges) split_utf8(r.first, r.last, sequences);
  const uint32_t start = add_state();
  const uint32_t end = add_state();
  // Sequences that share their leading byte ranges share states, so that the DFA built
  // from this stays close to the minimal one without a minimization pass.
  struct prefix_key {
    uint32_t from;
    uint8_t lo, hi;
    uint32_t to;
  };
  std::vector<prefix_key> made;
  for (const byte_sequence& seq : sequences) {
    uint32_t at = start;
    for (int i = 0; i < seq.length; ++i) {
      if (i + 1 == seq.length) {
        add_bytes(at, seq.lo[i], seq.hi[i], end);
        break;
      }
      uint32_t next = UINT32_MAX;
      for (const prefix_key& k : made) {
        if (k.from == at && k.lo == seq.lo[i] && k.hi == seq.hi[i]) next = k.to;
      }
      if (next == UINT32_MAX) {
        next = add_state();
        add_bytes(at, seq.lo[i], seq.hi[i], next);
        made.push_back({at, seq.lo[i], seq.hi[i], next});
      }
      at = next;
    }
  }
  return {start, end};
}

fragment nfa::concat(fragment a, fragment b) {
  add_epsilon(a.end, b.start);
  return {a.start, b.end};
}

fragment nfa::sequence(const std::vector<fragment>& parts) {
  if (parts.empty()) return empty();
  fragment out = parts.front();
  for (size_t i = 1; i < parts.size(); ++i) out = concat(out, parts[i]);
  return out;
}

fragment nfa::alternatives(const std::vector<fragment>& options) {
  const uint32_t start = add_state();
  const uint32_t end = add_state();
  for (const fragment f : options) {
    add_epsilon(start, f.start);
    add_epsilon(f.end, end);
  }
  return {start, end};
}

fragment nfa::optional(fragment f) {
  const uint32_t start = add_state();
  const uint32_t end = add_state();
  add_epsilon(start, f.start);
  add_epsilon(start, end);
  add_epsilon(f.end, end);
  return {start, end};
}

fragment nfa::star(fragment f) {
  const uint32_t hub = add_state();
  add_epsilon(hub, f.start);
  add_epsilon(f.end, hub);
  return {hub, hub};
}

fragment nfa::plus(fragment f) {
  const uint32_t end = add_state();
  add_epsilon(f.end, end);
  add_epsilon(end, f.start);
  return {f.start, end};
}

fragment nfa::repeat(const std::function<fragment()>& make, int min, int max) {
  fragment out = empty();
  for (int i = 0; i < min; ++i) out = concat(out, make());
  if (max < 0) return concat(out, star(make()));
  // Optional copies nest, so that skipping one skips the rest: (x(x(x)?)?)?.
  std::vector<fragment> tail;
  for (int i = min; i < max; ++i) tail.push_back(make());
  if (tail.empty()) return out;
  const uint32_t end = add_state();
  for (size_t i = 0; i < tail.size(); ++i) {
    add_epsilon(i == 0 ? out.end : tail[i - 1].end, tail[i].start);
    add_epsilon(i == 0 ? out.end : tail[i - 1].end, end);
  }
  add_epsilon(tail.back().end, end);
  return {out.start, end};
}

}  // namespace troupe::grammar_internal

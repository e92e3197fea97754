// Regex parsing (recursive descent over code points) and building (Thompson fragments).
#include "troupe/grammar/regex.hpp"

#include <cstdio>

#include "troupe/model/error.hpp"
#include "troupe/model/unicode.hpp"

namespace troupe::grammar_internal {

struct regex_node {
  enum class kind { chars, concat, alternation, repeat };
  kind type = kind::concat;
  std::vector<code_point_range> chars;  // normalized
  std::vector<std::unique_ptr<regex_node>> children;
  int min = 0;
  int max = 0;  // -1: unbounded
};

namespace {

constexpr int max_repeat = 1000;
using node_ptr = std::unique_ptr<regex_node>;

node_ptr make_chars(std::vector<code_point_range> ranges) {
  auto n = std::make_unique<regex_node>();
  n->type = regex_node::kind::chars;
  n->chars = normalize(std::move(ranges));
  return n;
}

const std::vector<code_point_range>& digit_set() {
  static const std::vector<code_point_range> s{{'0', '9'}};
  return s;
}
const std::vector<code_point_range>& word_set() {
  static const std::vector<code_point_range> s{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  return s;
}
const std::vector<code_point_range>& space_set() {
  // ECMAScript's WhiteSpace and LineTerminator.
  static const std::vector<code_point_range> s{
      {0x09, 0x0D}, {0x20, 0x20}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
      {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
  return s;
}

class parser {
 public:
  parser(std::string_view pattern, const std::string& where) : where_(where) {
    size_t i = 0;
    while (i < pattern.size()) {
      const int len = unicode::check_sequence(pattern.substr(i));
      if (len <= 0) fail("is not valid UTF-8", i);
      uint32_t cp = static_cast<uint8_t>(pattern[i]);
      if (len > 1) {
        cp &= 0xFF >> (len + 1);
        for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(pattern[i + k]) & 0x3F);
      }
      cps_.push_back(cp);
      i += static_cast<size_t>(len);
    }
  }

  node_ptr parse_all(bool& anchored_start, bool& anchored_end) {
    size_t end = cps_.size();
    if (!cps_.empty() && cps_[0] == '^') {
      anchored_start = true;
      at_ = 1;
    }
    if (end > at_ && cps_[end - 1] == '$' && !is_escaped(end - 1)) {
      anchored_end = true;
      --end;
    }
    end_ = end;
    node_ptr n = parse_alternation();
    if (at_ != end_) fail("has an unmatched ')'", at_);
    return n;
  }

 private:
  [[noreturn]] void fail(const std::string& what, size_t at) const {
    throw error(error_code::invalid_argument,
                "regex at " + where_ + " " + what + " (at character " + std::to_string(at) + ")");
  }

  // Whether the character at i is preceded by an odd number of backslashes.
  bool is_escaped(size_t i) const {
    size_t n = 0;
    while (i > n && cps_[i - n - 1] == '\\') ++n;
    return n % 2 == 1;
  }

  bool more() const { return at_ < end_; }
  uint32_t peek() const { return cps_[at_]; }

  node_ptr parse_alternation() {
    std::vector<node_ptr> options;
    options.push_back(parse_concat());
    while (more() && peek() == '|') {
      ++at_;
      options.push_back(parse_concat());
    }
    if (options.size() == 1) return std::move(options[0]);
    auto n = std::make_unique<regex_node>();
    n->type = regex_node::kind::alternation;
    n->children = std::move(options);
    return n;
  }

  node_ptr parse_concat() {
    auto n = std::make_unique<regex_node>();
    n->type = regex_node::kind::concat;
    while (more() && peek() != '|' && peek() != ')') n->children.push_back(parse_repeat());
    return n;
  }

  bool read_count(int& value) {
    if (!more() || peek() < '0' || peek() > '9') return false;
    long v = 0;
    while (more() && peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > max_repeat) fail("has a repetition count over " + std::to_string(max_repeat), at_);
      ++at_;
    }
    value = static_cast<int>(v);
    return true;
  }

  // {m}, {m,}, {m,n} at at_; false (at_ unchanged) when the brace is a literal.
  bool parse_braces(int& min, int& max) {
    const size_t saved = at_;
    ++at_;
    if (!read_count(min)) {
      at_ = saved;
      return false;
    }
    max = min;
    if (more() && peek() == ',') {
      ++at_;
      if (!read_count(max)) max = -1;
    }
    if (!more() || peek() != '}') {
      at_ = saved;
      return false;
    }
    ++at_;
    if (max >= 0 && max < min) fail("has a repetition {m,n} with n < m", saved);
    return true;
  }

  node_ptr parse_repeat() {
    const size_t atom_at = at_;
    node_ptr atom = parse_atom();
    while (more()) {
      int min = 0, max = 0;
      const uint32_t c = peek();
      if (c == '*') {
        min = 0, max = -1, ++at_;
      } else if (c == '+') {
        min = 1, max = -1, ++at_;
      } else if (c == '?') {
        min = 0, max = 1, ++at_;
      } else if (c == '{' && parse_braces(min, max)) {
      } else {
        break;
      }
      if (more() && peek() == '?') ++at_;  // lazy: the same set of texts
      if (more() && peek() == '+') fail("uses a possessive quantifier", at_);
      if (atom->type == regex_node::kind::repeat && atom->max < 0 && max < 0) {
        fail("repeats an unbounded repetition", atom_at);
      }
      auto n = std::make_unique<regex_node>();
      n->type = regex_node::kind::repeat;
      n->min = min;
      n->max = max;
      n->children.push_back(std::move(atom));
      atom = std::move(n);
    }
    return atom;
  }

  node_ptr parse_atom() {
    const size_t start = at_;
    const uint32_t c = peek();
    ++at_;
    switch (c) {
      case '(': {
        if (more() && peek() == '?') {
          ++at_;
          if (more() && peek() == ':') {
            ++at_;
          } else if (more() && (peek() == '<' || peek() == 'P') &&
                     !(peek() == '<' && at_ + 1 < end_ && (cps_[at_ + 1] == '=' || cps_[at_ + 1] == '!'))) {
            if (peek() == 'P') ++at_;
            if (!more() || peek() != '<') fail("has an unsupported group (?P", start);
            while (more() && peek() != '>') ++at_;
            if (!more()) fail("has an unterminated group name", start);
            ++at_;
          } else if (more() && (peek() == '=' || peek() == '!' || peek() == '<')) {
            fail("uses a lookaround assertion, which is not supported", start);
          } else {
            fail("uses an inline flag or group modifier (?...), which is not supported", start);
          }
        }
        node_ptr inner = parse_alternation();
        if (!more() || peek() != ')') fail("has an unclosed '('", start);
        ++at_;
        return inner;
      }
      case ')':
        fail("has an unmatched ')'", start);
      case '[':
        return parse_class(start);
      case '.':
        return make_chars(complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}));
      case '^':
      case '$':
        fail("uses an anchor that is not at the very start or end of the pattern", start);
      case '*':
      case '+':
      case '?':
        fail("has a quantifier with nothing to repeat", start);
      case '\\':
        return make_chars(parse_escape(false, start));
      default:
        return make_chars({{c, c}});
    }
  }

  uint32_t read_hex(int digits, size_t start) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      if (!more()) fail("has a truncated hex escape", start);
      const uint32_t h = peek();
      ++at_;
      int d = -1;
      if (h >= '0' && h <= '9') d = static_cast<int>(h - '0');
      if (h >= 'a' && h <= 'f') d = static_cast<int>(h - 'a' + 10);
      if (h >= 'A' && h <= 'F') d = static_cast<int>(h - 'A' + 10);
      if (d < 0) fail("has a bad hex digit in an escape", start);
      v = v * 16 + static_cast<uint32_t>(d);
    }
    return v;
  }

  // After a backslash: the set of characters the escape stands for.
  std::vector<code_point_range> parse_escape(bool in_class, size_t start) {
    if (!more()) fail("ends with a lone backslash", start);
    const uint32_t c = peek();
    ++at_;
    switch (c) {
      case 'd': return digit_set();
      case 'D': return complement(digit_set());
      case 'w': return word_set();
      case 'W': return complement(word_set());
      case 's': return space_set();
      case 'S': return complement(space_set());
      case 'n': return {{'\n', '\n'}};
      case 'r': return {{'\r', '\r'}};
      case 't': return {{'\t', '\t'}};
      case 'f': return {{'\f', '\f'}};
      case 'v': return {{'\v', '\v'}};
      case '0': return {{0, 0}};
      case 'x': {
        const uint32_t v = read_hex(2, start);
        return {{v, v}};
      }
      case 'u': {
        uint32_t v = 0;
        if (more() && peek() == '{') {
          ++at_;
          const size_t digits_at = at_;
          while (more() && peek() != '}') ++at_;
          if (!more() || at_ == digits_at || at_ - digits_at > 6) fail("has a bad \\u{...} escape", start);
          const size_t close = at_;
          at_ = digits_at;
          v = read_hex(static_cast<int>(close - digits_at), start);
          ++at_;
        } else {
          v = read_hex(4, start);
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) fail("escapes a surrogate or a value past U+10FFFF", start);
        return {{v, v}};
      }
      case 'b':
        if (in_class) return {{0x08, 0x08}};
        fail("uses the word-boundary assertion \\b, which is not supported", start);
      case 'B': fail("uses the assertion \\B, which is not supported", start);
      case 'p':
      case 'P': fail("uses a Unicode property class \\p{...}, which is not supported", start);
      case 'k': fail("uses a named backreference, which is not supported", start);
      case 'c': fail("uses a control escape \\c, which is not supported", start);
      default:
        if (c >= '1' && c <= '9') fail("uses a backreference, which is not supported", start);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
          fail("uses an unknown escape", start);
        }
        return {{c, c}};
    }
  }

  node_ptr parse_class(size_t start) {
    bool negated = false;
    if (more() && peek() == '^') {
      negated = true;
      ++at_;
    }
    std::vector<code_point_range> ranges;
    bool first = true;
    while (true) {
      if (!more()) fail("has an unclosed '['", start);
      if (peek() == ']' && !first) break;
      first = false;
      // One class member: a character (possibly the start of a range) or a set escape.
      auto read_member = [&](bool& is_single) {
        const size_t member_at = at_;
        const uint32_t c = peek();
        ++at_;
        if (c == '\\') {
          std::vector<code_point_range> set = parse_escape(true, member_at);
          is_single = set.size() == 1 && set[0].first == set[0].last;
          return set;
        }
        if (c == '[' && more() && peek() == ':') fail("uses a POSIX class [:...:], which is not supported", member_at);
        is_single = true;
        return std::vector<code_point_range>{{c, c}};
      };
      bool lo_single = false;
      std::vector<code_point_range> lo = read_member(lo_single);
      if (lo_single && more() && peek() == '-' && at_ + 1 < end_ && cps_[at_ + 1] != ']') {
        const size_t dash_at = at_;
        ++at_;
        bool hi_single = false;
        const std::vector<code_point_range> hi = read_member(hi_single);
        if (!hi_single) fail("has a class range ending in a set escape", dash_at);
        if (hi[0].first < lo[0].first) fail("has a class range out of order", dash_at);
        ranges.push_back({lo[0].first, hi[0].first});
      } else {
        ranges.insert(ranges.end(), lo.begin(), lo.end());
      }
    }
    ++at_;
    return make_chars(negated ? complement(std::move(ranges)) : std::move(ranges));
  }

  std::vector<uint32_t> cps_;
  size_t at_ = 0;
  size_t end_ = 0;
  std::string where_;
};

fragment build_node(nfa& a, const regex_node& n, bool json_escaped) {
  switch (n.type) {
    case regex_node::kind::chars:
      return build_char_set(a, n.chars, json_escaped);
    case regex_node::kind::concat: {
      std::vector<fragment> parts;
      for (const auto& c : n.children) parts.push_back(build_node(a, *c, json_escaped));
      return a.sequence(parts);
    }
    case regex_node::kind::alternation: {
      std::vector<fragment> options;
      for (const auto& c : n.children) options.push_back(build_node(a, *c, json_escaped));
      return a.alternatives(options);
    }
    case regex_node::kind::repeat:
      return a.repeat([&] { return build_node(a, *n.children[0], json_escaped); }, n.min, n.max);
  }
  return a.empty();
}

}  // namespace

fragment build_char_set(nfa& a, const std::vector<code_point_range>& ranges, bool json_escaped) {
  if (!json_escaped) return a.code_points(ranges);
  // Inside a JSON string '"', '\\' and U+0000..U+001F appear only as escapes: the
  // conventional short ones where JSON has them, \u00XX for the rest.
  std::vector<fragment> options;
  std::vector<code_point_range> plain;
  for (const code_point_range r : ranges) {
    for (uint32_t cp = r.first; cp <= std::min<uint32_t>(r.last, 0x5C); ++cp) {
      if (cp >= 0x20 && cp != '"' && cp != '\\') continue;
      std::string escape;
      switch (cp) {
        case '"': escape = "\\\""; break;
        case '\\': escape = "\\\\"; break;
        case '\b': escape = "\\b"; break;
        case '\f': escape = "\\f"; break;
        case '\n': escape = "\\n"; break;
        case '\r': escape = "\\r"; break;
        case '\t': escape = "\\t"; break;
        default: {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", cp);
          escape = buf;
        }
      }
      options.push_back(a.literal(escape));
    }
    plain.push_back(r);
  }
  std::vector<code_point_range> outside = complement(std::move(plain));
  outside.insert(outside.end(), {{0x00, 0x1F}, {'"', '"'}, {'\\', '\\'}});
  const std::vector<code_point_range> unescaped = complement(std::move(outside));
  if (!unescaped.empty()) options.push_back(a.code_points(unescaped));
  if (options.empty()) {
    // An empty set matches nothing: a fragment whose end cannot be reached.
    const uint32_t s = a.add_state();
    return {s, a.add_state()};
  }
  return options.size() == 1 ? options[0] : a.alternatives(options);
}

regex regex::parse(std::string_view pattern, std::string where) {
  regex r;
  parser p(pattern, where);
  r.root_ = p.parse_all(r.anchored_start_, r.anchored_end_);
  return r;
}

regex::regex(regex&&) noexcept = default;
regex& regex::operator=(regex&&) noexcept = default;
regex::~regex() = default;

fragment regex::build(nfa& automaton, bool json_escaped) const {
  return build_node(automaton, *root_, json_escaped);
}

}  // namespace troupe::grammar_internal

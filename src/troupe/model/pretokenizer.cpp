// Owns the pre-tokenizer splits. Each pass refines the current pieces independently (no
// look-ahead across a piece boundary), and both matches and the gaps between them become
// pieces, which is how llama.cpp applies its regex lists.
#include "troupe/model/pretokenizer.hpp"

#include <array>

#include "troupe/model/unicode.hpp"

namespace troupe {
namespace {

using unicode::flags_of;

struct name_entry {
  std::string_view name;
  pre_tokenizer_info info;
};

// Flags per name as llama.cpp sets them (llama_vocab::impl::load).
constexpr std::array k_names = {
    name_entry{"default", {pre_tokenizer::llama_default, true, true, false, false}},
    name_entry{"gpt-2", {pre_tokenizer::gpt2, true, true, false, false}},
    name_entry{"gpt2", {pre_tokenizer::gpt2, true, true, false, false}},
    name_entry{"mpt", {pre_tokenizer::gpt2, true, true, false, false}},
    name_entry{"olmo", {pre_tokenizer::gpt2, true, true, false, false}},
    name_entry{"phi-2", {pre_tokenizer::gpt2, true, true, false, false}},
    name_entry{"smollm", {pre_tokenizer::starcoder, true, false, false, false}},
    name_entry{"starcoder", {pre_tokenizer::starcoder, true, true, false, false}},
    name_entry{"refact", {pre_tokenizer::starcoder, true, true, false, false}},
    name_entry{"command-r", {pre_tokenizer::starcoder, true, false, false, false}},
    name_entry{"codeshell", {pre_tokenizer::starcoder, true, true, false, false}},
    name_entry{"llama3", {pre_tokenizer::llama3, true, true, true, true}},
    name_entry{"llama-v3", {pre_tokenizer::llama3, true, true, true, true}},
    name_entry{"llama-bpe", {pre_tokenizer::llama3, true, true, true, true}},
    name_entry{"falcon3", {pre_tokenizer::llama3, true, true, true, true}},
    name_entry{"pixtral", {pre_tokenizer::llama3, true, true, true, true}},
    name_entry{"dbrx", {pre_tokenizer::llama3, true, true, false, false}},
    name_entry{"smaug-bpe", {pre_tokenizer::llama3, true, true, false, false}},
    name_entry{"qwen2", {pre_tokenizer::qwen2, true, false, false, false}},
    name_entry{"deepseek-r1-qwen", {pre_tokenizer::qwen2, true, false, false, false}},
};

// A piece of code points [begin, end); at(i) is "out of range" outside it, so patterns
// never look across a piece boundary.
struct piece_view {
  std::span<const uint32_t> cpts;
  size_t begin;
  size_t end;

  bool has(size_t i) const { return i >= begin && i < end; }
  uint32_t at(size_t i) const { return has(i) ? cpts[i] : 0xFFFFFFFFu; }
  uint8_t flags(size_t i) const { return has(i) ? flags_of(cpts[i]) : 0; }
  bool is_letter(size_t i) const { return flags(i) & unicode::letter; }
  bool is_number(size_t i) const { return flags(i) & unicode::number; }
  bool is_space(size_t i) const { return flags(i) & unicode::whitespace; }
  // [^\s\p{L}\p{N}] for a code point inside the piece.
  bool is_other(size_t i) const {
    const uint8_t f = flags(i);
    return has(i) && !(f & (unicode::whitespace | unicode::letter | unicode::number));
  }
};

uint32_t ascii_lower(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; }

// Length of a contraction ('s 't 're 've 'm 'll 'd) starting at pos, or 0.
size_t contraction_length(const piece_view& p, size_t pos, bool is_case_insensitive) {
  if (p.at(pos) != '\'' || !p.has(pos + 1)) return 0;
  auto lower = [&](size_t i) { return is_case_insensitive ? ascii_lower(p.at(i)) : p.at(i); };
  const uint32_t c1 = lower(pos + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (!p.has(pos + 2)) return 0;
  const uint32_t c2 = lower(pos + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// Whitespace tail shared by gpt2 and llama3: \s+(?!\S) leaves the last space of a run that
// is followed by a non-space to the next piece; otherwise \s+ takes the run.
size_t whitespace_end(const piece_view& p, size_t pos) {
  size_t n = 0;
  while (p.is_space(pos + n)) ++n;
  if (n > 1 && p.has(pos + n)) return pos + n - 1;
  if (n > 0) return pos + n;
  return pos + 1;  // no alternative matched: the code point stands alone
}

// End of the piece matched at pos by GPT-2's pattern.
size_t gpt2_match_end(const piece_view& p, size_t pos) {
  if (const size_t n = contraction_length(p, pos, false)) return pos + n;
  const size_t q = p.at(pos) == ' ' ? pos + 1 : pos;  // optional leading space
  if (p.is_letter(q)) {
    size_t e = q;
    while (p.is_letter(e)) ++e;
    return e;
  }
  if (p.is_number(q)) {
    size_t e = q;
    while (p.is_number(e)) ++e;
    return e;
  }
  if (p.is_other(q)) {
    size_t e = q;
    while (p.is_other(e)) ++e;
    return e;
  }
  return whitespace_end(p, pos);
}

// End of the piece matched at pos by the llama-3 (max_digits 3) or Qwen2 (1) pattern.
size_t llama3_match_end(const piece_view& p, size_t pos, size_t max_digits) {
  if (const size_t n = contraction_length(p, pos, true)) return pos + n;
  const uint32_t cp = p.at(pos);
  if (cp != '\r' && cp != '\n' && !p.is_number(pos) && (p.is_letter(pos) || p.is_letter(pos + 1))) {
    size_t e = pos + 1;  // [^\r\n\p{L}\p{N}]?\p{L}+ : the first code point is taken either way
    while (p.is_letter(e)) ++e;
    return e;
  }
  if (p.is_number(pos)) {
    size_t e = pos;
    while (e - pos < max_digits && p.is_number(e)) ++e;
    return e;
  }
  const size_t q = cp == ' ' ? pos + 1 : pos;
  if (p.is_other(q) || (cp == ' ' && !p.has(q))) {
    size_t e = q;  // ?[^\s\p{L}\p{N}]+[\r\n]*
    while (p.is_other(e)) ++e;
    while (p.at(e) == '\r' || p.at(e) == '\n') ++e;
    return e;
  }
  size_t n = 0;
  size_t last_newline_end = 0;
  while (p.is_space(pos + n)) {
    if (p.at(pos + n) == '\r' || p.at(pos + n) == '\n') last_newline_end = pos + n + 1;
    ++n;
  }
  if (last_newline_end > 0) return last_newline_end;  // \s*[\r\n]+
  return whitespace_end(p, pos);
}

// Applies a pattern that tiles each piece completely (match_end always advances).
template <typename match_fn>
std::vector<size_t> split_tiling(std::span<const uint32_t> cpts, const std::vector<size_t>& pieces,
                                 match_fn match_end) {
  std::vector<size_t> out;
  out.reserve(pieces.size() * 2);
  size_t begin = 0;
  for (const size_t len : pieces) {
    const piece_view p{cpts, begin, begin + len};
    for (size_t pos = begin; pos < p.end;) {
      const size_t e = match_end(p, pos);
      out.push_back(e - pos);
      pos = e;
    }
    begin += len;
  }
  return out;
}

// Applies a pattern that matches some spans: find(p, pos) returns the next match
// [first, second) at or after pos, or {end, end}. Gaps become pieces too.
template <typename find_fn>
std::vector<size_t> split_matches(std::span<const uint32_t> cpts, const std::vector<size_t>& pieces,
                                  find_fn find) {
  std::vector<size_t> out;
  out.reserve(pieces.size() * 2);
  size_t begin = 0;
  for (const size_t len : pieces) {
    const piece_view p{cpts, begin, begin + len};
    size_t pos = begin;
    while (pos < p.end) {
      const auto [first, second] = find(p, pos);
      if (first >= p.end) break;
      if (first > pos) out.push_back(first - pos);
      out.push_back(second - first);
      pos = second;
    }
    if (pos < p.end) out.push_back(p.end - pos);
    begin += len;
  }
  return out;
}

// Matches runs of code points satisfying is_in, each at most max_run long.
template <typename pred_fn>
auto run_finder(pred_fn is_in, size_t max_run) {
  return [is_in, max_run](const piece_view& p, size_t pos) -> std::pair<size_t, size_t> {
    while (pos < p.end && !is_in(p.cpts[pos])) ++pos;
    size_t e = pos;
    while (e < p.end && e - pos < max_run && is_in(p.cpts[e])) ++e;
    return {pos, e};
  };
}

bool is_number_cp(uint32_t cp) { return flags_of(cp) & unicode::number; }

// [\p{P}\$\+<=>\^~\|] as llama.cpp's collapsed std::regex sees it.
bool is_default_punct(uint32_t cp) {
  if (cp < 0x80) {
    return (flags_of(cp) & unicode::punctuation) || cp == '$' || cp == '+' || cp == '<' ||
           cp == '=' || cp == '>' || cp == '^' || cp == '~' || cp == '|';
  }
  const uint8_t f = flags_of(cp);
  return (f & unicode::punctuation) && !(f & unicode::whitespace);
}

// [0-9][0-9][0-9]: leftmost non-overlapping triples of ASCII digits.
std::pair<size_t, size_t> find_digit_triple(const piece_view& p, size_t pos) {
  auto is_digit = [&](size_t i) { return i < p.end && p.cpts[i] >= '0' && p.cpts[i] <= '9'; };
  for (; pos + 3 <= p.end; ++pos) {
    if (is_digit(pos) && is_digit(pos + 1) && is_digit(pos + 2)) return {pos, pos + 3};
  }
  return {p.end, p.end};
}

}  // namespace

pre_tokenizer_info pre_tokenizer_from_name(std::string_view name) {
  if (name.empty()) name = "default";
  for (const auto& entry : k_names) {
    if (entry.name == name) return entry.info;
  }
  return {pre_tokenizer::gpt2, false, true, false, false};
}

std::vector<size_t> pre_tokenize(pre_tokenizer kind, std::span<const uint32_t> cpts) {
  std::vector<size_t> pieces;
  if (cpts.empty()) return pieces;
  pieces.push_back(cpts.size());
  const auto gpt2 = [](const piece_view& p, size_t pos) { return gpt2_match_end(p, pos); };
  switch (kind) {
    case pre_tokenizer::gpt2:
      return split_tiling(cpts, pieces, gpt2);
    case pre_tokenizer::starcoder:
      pieces = split_matches(cpts, pieces, run_finder(is_number_cp, 1));
      return split_tiling(cpts, pieces, gpt2);
    case pre_tokenizer::llama3:
      return split_tiling(cpts, pieces,
                          [](const piece_view& p, size_t pos) { return llama3_match_end(p, pos, 3); });
    case pre_tokenizer::qwen2:
      return split_tiling(cpts, pieces,
                          [](const piece_view& p, size_t pos) { return llama3_match_end(p, pos, 1); });
    case pre_tokenizer::llama_default:
      pieces = split_matches(cpts, pieces, run_finder(is_default_punct, SIZE_MAX));
      pieces = split_tiling(cpts, pieces, gpt2);
      pieces = split_matches(cpts, pieces, run_finder(is_number_cp, SIZE_MAX));
      return split_matches(cpts, pieces, find_digit_triple);
  }
  return pieces;
}

}  // namespace troupe

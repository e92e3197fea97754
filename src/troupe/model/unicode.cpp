// Code point categories, UTF-8 encoding/decoding and the GPT-2 byte mapping (see unicode.hpp).
#include "troupe/model/unicode.hpp"

#include <algorithm>
#include <array>

namespace troupe::unicode {
namespace {

constexpr size_t k_num_code_points = max_code_point + 1;

// One byte per code point (1.1 MB), expanded once from the generated runs: lookups sit in
// the pre-tokenizer's inner loops, where a binary search per character would dominate.
const std::vector<uint8_t>& flag_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(k_num_code_points, 0);
    for (size_t i = 0; i < detail::k_num_ranges; ++i) {
      const uint32_t end = i + 1 < detail::k_num_ranges ? detail::k_ranges[i + 1].first
                                                         : static_cast<uint32_t>(k_num_code_points);
      std::fill(t.begin() + detail::k_ranges[i].first, t.begin() + end, detail::k_ranges[i].flags);
    }
    return t;
  }();
  return table;
}

bool is_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

struct byte_map {
  std::array<std::string, 256> text_of_byte;
  std::array<int16_t, 512> byte_of_code_point;  // every image lies below U+0200
};

const byte_map& gpt2_byte_map() {
  static const byte_map map = [] {
    byte_map m;
    m.byte_of_code_point.fill(-1);
    auto is_printable = [](int b) {
      return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next_extra = 0x100;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = is_printable(b) ? static_cast<uint32_t>(b) : next_extra++;
      append_utf8(m.text_of_byte[b], cp);
      m.byte_of_code_point[cp] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return map;
}

}  // namespace

uint8_t flags_of(uint32_t cp) { return cp < k_num_code_points ? flag_table()[cp] : 0; }

std::vector<uint32_t> decode_lenient(std::string_view utf8) {
  std::vector<uint32_t> cpts;
  cpts.reserve(utf8.size());
  const auto* s = reinterpret_cast<const uint8_t*>(utf8.data());
  const size_t n = utf8.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b0 = s[i];
    if (b0 < 0x80) {
      cpts.push_back(b0);
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cp = b0 & 0x07;
    }
    bool is_valid = len != 0 && i + len <= n;
    for (size_t k = 1; is_valid && k < len; ++k) {
      is_valid = is_continuation(s[i + k]);
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (is_valid && cp <= max_code_point) {
      cpts.push_back(cp);
      i += len;
    } else {
      cpts.push_back(replacement_char);
      ++i;
    }
  }
  return cpts;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t sequence_length_from_lead(uint8_t lead) {
  static constexpr uint8_t lengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lengths[lead >> 4];
}

int check_sequence(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  if (n == 0) return 0;
  const uint8_t b0 = s[0];
  if (b0 < 0x80) return 1;
  int len = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (static_cast<size_t>(k) >= n) return 0;
    const uint8_t b = s[k];
    const bool is_ok = k == 1 ? (b >= lo && b <= hi) : is_continuation(b);
    if (!is_ok) return -k;
  }
  return len;
}

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const int r = check_sequence(text.substr(i));
    if (r > 0) {
      out.append(text.substr(i, static_cast<size_t>(r)));
      i += static_cast<size_t>(r);
    } else {
      append_utf8(out, replacement_char);
      i += r < 0 ? static_cast<size_t>(-r) : text.size() - i;
    }
  }
  return out;
}

const std::string& byte_to_bpe_text(uint8_t byte) { return gpt2_byte_map().text_of_byte[byte]; }

int bpe_code_point_to_byte(uint32_t cp) {
  return cp < 512 ? gpt2_byte_map().byte_of_code_point[cp] : -1;
}

}  // namespace troupe::unicode

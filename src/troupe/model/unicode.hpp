// Unicode helpers for the tokenizer: code point categories (from the generated tables),
// UTF-8 decoding with llama.cpp's lenient rules, strict UTF-8 checking, and GPT-2's
// byte <-> code point mapping used by byte-level BPE vocabularies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::unicode {

// Category bits of a code point; the major category is exactly one of the first seven.
enum flag : uint8_t {
  letter = 1 << 0,       // \p{L}
  number = 1 << 1,       // \p{N}
  punctuation = 1 << 2,  // \p{P}
  symbol = 1 << 3,       // \p{S}
  mark = 1 << 4,         // \p{M}
  separator = 1 << 5,    // \p{Z}
  other = 1 << 6,        // \p{C}, unassigned code points included
  whitespace = 1 << 7,   // the White_Space property (what \s means here)
};

inline constexpr uint32_t replacement_char = 0xFFFD;
inline constexpr uint32_t max_code_point = 0x10FFFF;

// Category bits of cp; 0 for values above U+10FFFF.
uint8_t flags_of(uint32_t cp);
inline bool is_letter(uint32_t cp) { return flags_of(cp) & letter; }
inline bool is_number(uint32_t cp) { return flags_of(cp) & number; }
inline bool is_whitespace(uint32_t cp) { return flags_of(cp) & whitespace; }

// Decodes like llama.cpp's unicode_cpts_from_utf8: sequences are taken at face value from
// the lead byte (no overlong or surrogate checks); a byte that cannot start a complete
// sequence becomes U+FFFD and decoding resumes at the next byte. Values above U+10FFFF
// (lead bytes F5..F7) are treated the same way, where llama.cpp would throw.
std::vector<uint32_t> decode_lenient(std::string_view utf8);

// Appends the UTF-8 encoding of cp (cp <= U+10FFFF; surrogates are encoded as-is).
void append_utf8(std::string& out, uint32_t cp);

// Byte length of a UTF-8 sequence judged by its lead byte alone (llama.cpp's
// unicode_len_utf8): 1 for ASCII and for continuation bytes.
size_t sequence_length_from_lead(uint8_t lead);

// Strict UTF-8 check of the sequence starting at text[0]:
//   > 0: a complete valid character of that many bytes;
//   0:   a valid but incomplete prefix (text ends before the character does);
//   < 0: invalid; -n means the first n bytes form a maximal invalid subpart to replace
//        with one U+FFFD.
int check_sequence(std::string_view text);

// Replaces every invalid subpart of text by U+FFFD (incomplete trailing ones included).
std::string sanitize_utf8(std::string_view text);

// GPT-2 byte-level mapping: printable Latin-1 bytes map to themselves, the other 68 bytes
// to U+0100.. in ascending order. Returns the UTF-8 text of the mapped code point.
const std::string& byte_to_bpe_text(uint8_t byte);
// Inverse mapping; -1 when cp is not the image of any byte.
int bpe_code_point_to_byte(uint32_t cp);

}  // namespace troupe::unicode

namespace troupe::unicode::detail {
struct range {
  uint32_t first;  // the run lasts until the next range's first code point
  uint8_t flags;
};
extern const range k_ranges[];
extern const size_t k_num_ranges;
}  // namespace troupe::unicode::detail

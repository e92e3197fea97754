// libFuzzer target for the tokenizer: arbitrary bytes (invalid UTF-8 included) are encoded
// with and without special-token parsing, and arbitrary token ids are decoded, with the
// vocabulary of a real model ($TROUPE_FUZZ_MODEL, a GGUF file; only its metadata is read).
// What must hold:
//   - every id encode returns lies inside the vocabulary;
//   - for byte-level BPE without llama.cpp's space clean-up (SmolLM2's "smollm"), decoding
//     gives back the input as the lenient UTF-8 decoder read it: byte for byte when the
//     input is valid UTF-8, with U+FFFD for the bytes that start no character, and without
//     the bytes that the vocabulary has no token for (SmolLM2 lacks 21, among them 0x04 and
//     0xF1: llama.cpp drops them too);
//   - the incremental decoder, fed one id at a time, emits exactly the pieces' bytes with
//     invalid sequences replaced (what flush-at-once would give), however the ids split
//     a character.
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/tokenizer.hpp"
#include "troupe/model/unicode.hpp"

namespace {

std::optional<troupe::tokenizer> g_tokenizer;
bool g_round_trips = false;
std::array<bool, 256> g_has_byte_token{};

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_tokenizer: %s\n", why.c_str());
  std::abort();
}

void check_ids(const std::vector<int32_t>& ids) {
  for (const int32_t id : ids) {
    if (id < 0 || id >= g_tokenizer->vocab_size()) fail("encode returned an id outside the vocabulary");
  }
}

// What byte-level BPE can give back: the input as the lenient UTF-8 decoder reads it, less
// the bytes with no token.
std::string representable(std::string_view bytes) {
  std::string text, out;
  for (const uint32_t cp : troupe::unicode::decode_lenient(bytes)) troupe::unicode::append_utf8(text, cp);
  for (const char c : text) {
    if (g_has_byte_token[static_cast<uint8_t>(c)]) out += c;
  }
  return out;
}

void check_incremental(const std::vector<int32_t>& ids) {
  troupe::incremental_decoder decoder(*g_tokenizer);
  std::string streamed, whole;
  for (const int32_t id : ids) {
    streamed += decoder.push(id);
    whole += g_tokenizer->token_to_piece(id, false);
  }
  streamed += decoder.flush();
  if (streamed != troupe::unicode::sanitize_utf8(whole)) fail("incremental decoding differs from decoding at once");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("TROUPE_FUZZ_MODEL");
  if (path == nullptr || *path == '\0') fail("set TROUPE_FUZZ_MODEL to a GGUF model (scripts/fetch_model.sh fetches one)");
  try {
    g_tokenizer = troupe::tokenizer::from_gguf(troupe::gguf::file::open(path));
  } catch (const troupe::error& e) {
    fail(std::string("cannot load the tokenizer of ") + path + ": " + e.what());
  }
  std::unordered_set<std::string> texts;
  for (int32_t id = 0; id < g_tokenizer->vocab_size(); ++id) texts.insert(g_tokenizer->token_text(id));
  for (int b = 0; b < 256; ++b) g_has_byte_token[b] = texts.count(troupe::unicode::byte_to_bpe_text(static_cast<uint8_t>(b))) > 0;
  // Only byte-level BPE promises the round trip, and llama.cpp's clean-up of " ." and
  // friends (pre-tokenizers gpt-2, llama3, default) deliberately breaks it.
  const std::string probe = "a . b 's";
  g_round_trips = g_tokenizer->model_name() == "gpt2" && g_tokenizer->decode(g_tokenizer->encode(probe, false, false), true) == probe;
  std::fprintf(stderr, "fuzz_tokenizer: %s (%s/%s, %d tokens), round trip %s\n", path,
               std::string(g_tokenizer->model_name()).c_str(), std::string(g_tokenizer->pre_name()).c_str(),
               g_tokenizer->vocab_size(), g_round_trips ? "checked" : "not promised");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The lowest bit of the length picks special-token parsing: one encode per input is half
  // the cost of both, and inserting or erasing a byte flips it.
  const bool parse_special = size % 2 == 1;
  const std::vector<int32_t> encoded = g_tokenizer->encode(text, false, parse_special);
  check_ids(encoded);
  if (g_round_trips && g_tokenizer->decode(encoded, true) != representable(text)) fail("decode(encode(x)) differs from x");

  // The same bytes read as token ids: any sequence of pieces, splitting characters anywhere
  // (a superset of what encode produces, so only these go through the incremental decoder).
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size && ids.size() < 32; i += 2) {
    ids.push_back(static_cast<int32_t>((data[i] | data[i + 1] << 8) % g_tokenizer->vocab_size()));
  }
  check_incremental(ids);
  return 0;
}

// Tokenizer specs: Unicode categories and splits, BPE and SentencePiece merging on tiny
// in-memory vocabularies, metadata validation, incremental decoding, and exact agreement
// with llama.cpp on the default model, on Qwen2.5's vocabulary and on a tiny SentencePiece
// vocab (tests/data goldens).
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "troupe/model/error.hpp"
#include "troupe/model/pretokenizer.hpp"
#include "troupe/model/tokenizer.hpp"
#include "troupe/model/unicode.hpp"
#include "tests/model/golden_json.hpp"
#include "tests/util/gguf_writer.hpp"
#include "util/require_model.hpp"

using namespace troupe;
using troupe::test::gguf_writer;

namespace {

// Byte-level vocabulary: the 256 mapped bytes (id = byte), then extra tokens.
struct tiny_bpe {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  std::string pre = "gpt2";

  tiny_bpe() {
    for (int b = 0; b < 256; ++b) {
      tokens.push_back(unicode::byte_to_bpe_text(static_cast<uint8_t>(b)));
      types.push_back(1);
    }
  }
  int32_t add(const std::string& text, int32_t type = 1) {
    tokens.push_back(text);
    types.push_back(type);
    return static_cast<int32_t>(tokens.size() - 1);
  }
  gguf_writer writer() const {
    gguf_writer w;
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", pre);
    w.add_strings("tokenizer.ggml.tokens", tokens);
    w.add_i32s("tokenizer.ggml.token_type", types);
    w.add_strings("tokenizer.ggml.merges", merges);
    return w;
  }
  tokenizer build() const { return tokenizer::from_gguf(gguf::file::parse(writer().bytes())); }
};

std::vector<std::string> split(pre_tokenizer kind, const std::string& text) {
  const std::vector<uint32_t> cpts = unicode::decode_lenient(text);
  std::vector<std::string> pieces;
  size_t begin = 0;
  for (const size_t len : pre_tokenize(kind, cpts)) {
    std::string s;
    for (size_t i = begin; i < begin + len; ++i) unicode::append_utf8(s, cpts[i]);
    pieces.push_back(s);
    begin += len;
  }
  return pieces;
}

std::string invalid_model_message(const gguf_writer& w) {
  try {
    tokenizer::from_gguf(gguf::file::parse(w.bytes()));
  } catch (const error& e) {
    CHECK(e.code() == error_code::invalid_model);
    return e.what();
  }
  FAIL("from_gguf did not throw");
  return {};
}

uint64_t fnv1a_pieces(const tokenizer& tok, bool render_special) {
  uint64_t h = 0xCBF29CE484222325ull;
  auto eat = [&h](unsigned char c) { h = (h ^ c) * 0x100000001B3ull; };
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string p = tok.token_to_piece(id, render_special);
    const uint32_t n = static_cast<uint32_t>(p.size());
    for (int k = 0; k < 4; ++k) eat(static_cast<unsigned char>(n >> (8 * k)));
    for (const char c : p) eat(static_cast<unsigned char>(c));
  }
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Checks every golden case of one model; returns the number that matched exactly.
int check_golden_cases(const tokenizer& tok, const troupe::test::json& model) {
  int num_matched = 0;
  for (const auto& c : model["cases"].items) {
    const std::string text = c.has("text") ? c["text"].str : troupe::test::from_hex(c["text_hex"].str);
    const std::vector<int32_t> expected = c["ids"].ints();
    const std::vector<int32_t> ids = tok.encode(text, c["add_special"].b, c["parse_special"].b);
    const std::string decoded = tok.decode(ids, false);
    const std::string decoded_special = tok.decode(ids, true);
    CAPTURE(text);
    CAPTURE(c["parse_special"].b);
    CHECK(ids == expected);
    CHECK(decoded == troupe::test::from_hex(c["decoded_hex"].str));
    CHECK(decoded_special == troupe::test::from_hex(c["decoded_special_hex"].str));
    if (ids == expected && decoded == troupe::test::from_hex(c["decoded_hex"].str)) ++num_matched;
  }
  return num_matched;
}

const std::string k_golden_path = std::string(TROUPE_TEST_DATA_DIR) + "/tokenizer_golden.json";

}  // namespace

TEST_CASE("unicode categories follow \\p{L}, \\p{N} and White_Space") {
  CHECK(unicode::is_letter('a'));
  CHECK(unicode::is_letter(0x65E5));  // 日
  CHECK(unicode::is_number('7'));
  CHECK(unicode::is_number(0x0663));  // Arabic-Indic three
  CHECK(unicode::is_number(0x00B2));  // superscript two (No)
  CHECK(unicode::is_whitespace(' '));
  CHECK(unicode::is_whitespace(0x3000));
  CHECK(unicode::is_whitespace(0x0085));
  CHECK_FALSE(unicode::is_whitespace(0x200B));  // zero width space is Cf, not White_Space
  CHECK((unicode::flags_of('!') & unicode::punctuation) != 0);
  CHECK((unicode::flags_of('$') & unicode::symbol) != 0);
  CHECK((unicode::flags_of(0x0301) & unicode::mark) != 0);
}

TEST_CASE("lenient UTF-8 decoding turns each bad byte into U+FFFD like llama.cpp") {
  CHECK(unicode::decode_lenient("a\xFF" "b") == std::vector<uint32_t>{'a', 0xFFFD, 'b'});
  CHECK(unicode::decode_lenient("\xE2\x82") == std::vector<uint32_t>{0xFFFD, 0xFFFD});
  CHECK(unicode::decode_lenient("\xC0\x80") == std::vector<uint32_t>{0});  // overlong taken at face value
  CHECK(unicode::decode_lenient("\xF0\x9F\x98\x80") == std::vector<uint32_t>{0x1F600});
}

TEST_CASE("strict sanitizing replaces each maximal invalid subpart once") {
  CHECK(unicode::sanitize_utf8("ok") == "ok");
  CHECK(unicode::sanitize_utf8("a\xE2\x82") == "a\xEF\xBF\xBD");
  CHECK(unicode::sanitize_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST_CASE("smollm split isolates every digit and hands a space run's last space onward") {
  CHECK(split(pre_tokenizer::starcoder, "Hello world! 123") ==
        std::vector<std::string>{"Hello", " world", "!", " ", "1", "2", "3"});
  CHECK(split(pre_tokenizer::starcoder, "a   b") == std::vector<std::string>{"a", "  ", " b"});
  CHECK(split(pre_tokenizer::starcoder, "I'm OK'S") == std::vector<std::string>{"I", "'m", " OK", "'", "S"});
}

TEST_CASE("gpt2 split keeps digit runs and case-sensitive contractions") {
  CHECK(split(pre_tokenizer::gpt2, "x 2024 they'll") == std::vector<std::string>{"x", " 2024", " they", "'ll"});
  CHECK(split(pre_tokenizer::gpt2, "tab\t!") == std::vector<std::string>{"tab", "\t", "!"});
}

TEST_CASE("llama3 split groups digits by three and folds case in contractions") {
  CHECK(split(pre_tokenizer::llama3, "1234567") == std::vector<std::string>{"123", "456", "7"});
  CHECK(split(pre_tokenizer::llama3, "I'M here") == std::vector<std::string>{"I", "'M", " here"});
  CHECK(split(pre_tokenizer::llama3, "a  \n\n b") == std::vector<std::string>{"a", "  \n\n", " b"});
  CHECK(split(pre_tokenizer::llama3, "(hi)!\n") == std::vector<std::string>{"(hi", ")!\n"});
  CHECK(split(pre_tokenizer::qwen2, "123") == std::vector<std::string>{"1", "2", "3"});
}

TEST_CASE("unknown pre-tokenizer names fall back to gpt2 and say so") {
  const pre_tokenizer_info info = pre_tokenizer_from_name("no-such-pre");
  CHECK(info.kind == pre_tokenizer::gpt2);
  CHECK_FALSE(info.is_known);
  CHECK(pre_tokenizer_from_name("smollm").kind == pre_tokenizer::starcoder);
  CHECK(pre_tokenizer_from_name("").kind == pre_tokenizer::llama_default);
}

TEST_CASE("BPE merges the lowest-rank pair first") {
  tiny_bpe v;
  const int32_t bc = v.add("bc");
  v.add("ab");
  v.merges = {"b c", "a b"};
  CHECK(v.build().encode("abc", false, false) == std::vector<int32_t>{'a', bc});
}

TEST_CASE("BPE breaks rank ties leftmost and continues with the merged symbols") {
  tiny_bpe v;
  const int32_t aa = v.add("aa");
  const int32_t aaaa = v.add("aaaa");
  v.merges = {"a a", "aa aa"};
  const tokenizer tok = v.build();
  CHECK(tok.encode("aaa", false, false) == std::vector<int32_t>{aa, 'a'});
  CHECK(tok.encode("aaaaa", false, false) == std::vector<int32_t>{aaaa, 'a'});
}

TEST_CASE("BPE maps bytes through the GPT-2 table and decodes back") {
  tiny_bpe v;
  const int32_t space_h = v.add("\xC4\xA0h");  // "Ġh"
  v.merges = {"\xC4\xA0 h"};
  const tokenizer tok = v.build();
  const std::vector<int32_t> ids = tok.encode("h h\n", false, false);
  CHECK(ids == std::vector<int32_t>{'h', space_h, '\n'});
  CHECK(tok.decode(ids, false) == "h h\n");
}

TEST_CASE("a merge whose result is not a token falls back to its byte tokens") {
  tiny_bpe v;
  v.merges = {"x y"};
  CHECK(v.build().encode("xy", false, false) == std::vector<int32_t>{'x', 'y'});
}

TEST_CASE("without parse_special, control texts stay text but user-defined ones still split") {
  tiny_bpe v;
  const int32_t control = v.add("<c>", 3);
  const int32_t user = v.add("<u>", 4);
  const tokenizer tok = v.build();
  CHECK(tok.encode("<c>", false, true) == std::vector<int32_t>{control});
  CHECK(tok.encode("<c>", false, false) == std::vector<int32_t>{'<', 'c', '>'});
  CHECK(tok.encode("a<u>b", false, false) == std::vector<int32_t>{'a', user, 'b'});
  CHECK(tok.token_to_piece(control, false).empty());
  CHECK(tok.token_to_piece(control, true) == "<c>");
  CHECK(tok.token_to_piece(user, false) == "<u>");
}

TEST_CASE("longer special texts win over their prefixes") {
  tiny_bpe v;
  const int32_t shorter = v.add("<a>", 3);
  const int32_t longer = v.add("<a>b", 3);
  const tokenizer tok = v.build();
  CHECK(tok.encode("<a>b<a>", false, true) == std::vector<int32_t>{longer, shorter});
}

TEST_CASE("add_special adds BOS and EOS only as the metadata asks") {
  tiny_bpe v;
  const int32_t bos = v.add("<s>", 3);
  const int32_t eos = v.add("</s>", 3);
  gguf_writer w = v.writer();
  w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_bool("tokenizer.ggml.add_eos_token", true);
  const tokenizer tok = tokenizer::from_gguf(gguf::file::parse(w.bytes()));
  CHECK(tok.encode("a", true, false) == std::vector<int32_t>{bos, 'a', eos});
  CHECK(tok.encode("a", false, false) == std::vector<int32_t>{'a'});
  CHECK(tok.is_eog(eos));
}

TEST_CASE("a missing token list is an invalid model naming the key") {
  gguf_writer w;
  w.add_string("tokenizer.ggml.model", "gpt2");
  CHECK(invalid_model_message(w).find("tokenizer.ggml.tokens") != std::string::npos);
}

TEST_CASE("a merge naming a token outside the vocabulary is an invalid model") {
  tiny_bpe v;
  v.merges = {"a nosuchtoken"};
  CHECK(invalid_model_message(v.writer()).find("tokenizer.ggml.merges[0]") != std::string::npos);
}

TEST_CASE("special token ids outside the vocabulary are an invalid model naming the key") {
  tiny_bpe v;
  gguf_writer w = v.writer();
  w.add_u32("tokenizer.ggml.bos_token_id", 100000);
  CHECK(invalid_model_message(w).find("tokenizer.ggml.bos_token_id") != std::string::npos);
  gguf_writer w2 = v.writer();
  w2.add_u32("tokenizer.ggml.eos_token_id", 256);
  CHECK(invalid_model_message(w2).find("tokenizer.ggml.eos_token_id") != std::string::npos);
}

TEST_CASE("an unknown tokenizer model is unsupported") {
  tiny_bpe v;
  gguf_writer w;
  w.add_string("tokenizer.ggml.model", "bert");
  w.add_strings("tokenizer.ggml.tokens", v.tokens);
  try {
    tokenizer::from_gguf(gguf::file::parse(w.bytes()));
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == error_code::unsupported);
  }
}

TEST_CASE("incremental decoder holds a split character until it completes") {
  const tokenizer tok = tiny_bpe().build();
  const std::vector<int32_t> ids = tok.encode("\xC3\xA9\xF0\x9F\x98\x80!", false, false);  // é😀!
  REQUIRE(ids.size() == 7);
  incremental_decoder dec(tok);
  std::vector<std::string> outs;
  for (const int32_t id : ids) outs.push_back(dec.push(id));
  CHECK(outs == std::vector<std::string>{"", "\xC3\xA9", "", "", "", "\xF0\x9F\x98\x80", "!"});
  CHECK(dec.flush().empty());
}

TEST_CASE("incremental decoder flushes a dangling partial character as U+FFFD") {
  const tokenizer tok = tiny_bpe().build();
  incremental_decoder dec(tok);
  CHECK(dec.push(0xF0) == "");
  CHECK(dec.push(0x9F) == "");
  CHECK(dec.flush() == "\xEF\xBF\xBD");
  CHECK(dec.push(0xFF) == "\xEF\xBF\xBD");  // never valid: replaced at once
}

TEST_CASE("the default model tokenizes exactly like llama.cpp") {
  TROUPE_REQUIRE_MODEL();
  const auto golden = troupe::test::json::load(k_golden_path)["bpe"];
  const gguf::file file = gguf::file::open(TROUPE_TEST_MODEL);
  const tokenizer tok = tokenizer::from_gguf(file);
  CHECK(tok.model_name() == "gpt2");
  CHECK(tok.pre_name() == "smollm");
  CHECK(tok.vocab_size() == static_cast<int32_t>(golden["n_vocab"].num));
  CHECK(tok.encode("\n", false, false) == std::vector<int32_t>{198});
  CHECK(tok.eog_ids() == golden["eog_ids"].ints());
  CHECK(hex64(fnv1a_pieces(tok, false)) == golden["pieces_fnv1a"].str);
  CHECK(hex64(fnv1a_pieces(tok, true)) == golden["pieces_special_fnv1a"].str);
  const int num_matched = check_golden_cases(tok, golden);
  MESSAGE(num_matched << " of " << golden["cases"].items.size() << " golden BPE strings match llama.cpp");
}

TEST_CASE("qwen2.5-coder-0.5b: the Qwen2.5 vocabulary tokenizes exactly like llama.cpp") {
  TROUPE_REQUIRE_QWEN_MODEL();
  const auto golden =
      troupe::test::json::load(std::string(TROUPE_TEST_DATA_DIR) + "/qwen2.5-coder-0.5b/tokenizer_golden.json");
  const gguf::file file = gguf::file::open(TROUPE_TEST_QWEN_MODEL);
  const tokenizer tok = tokenizer::from_gguf(file);
  CHECK(tok.pre_name() == "qwen2");
  CHECK(tok.vocab_size() == static_cast<int32_t>(golden["n_vocab"].num));
  CHECK(tok.eog_ids() == golden["eog_ids"].ints());
  CHECK(tok.encode("hi", true, false) == tok.encode("hi", false, false));  // add_bos_token is false
  CHECK(hex64(fnv1a_pieces(tok, false)) == golden["pieces_fnv1a"].str);
  CHECK(hex64(fnv1a_pieces(tok, true)) == golden["pieces_special_fnv1a"].str);
  CHECK(golden["cases"].items.size() >= 176);
  const int num_matched = check_golden_cases(tok, golden);
  MESSAGE(num_matched << " of " << golden["cases"].items.size() << " golden Qwen2.5 strings match llama.cpp");
}

TEST_CASE("llama3, qwen2, gpt-2, default and starcoder splits match llama.cpp on SmolLM2's vocabulary") {
  TROUPE_REQUIRE_MODEL();
  const auto variants = troupe::test::json::load(k_golden_path)["bpe"]["pre_variants"];
  const gguf::file real = gguf::file::open(TROUPE_TEST_MODEL);
  std::vector<int32_t> types;
  for (const int64_t t : real.get_array("tokenizer.ggml.token_type")->ints) types.push_back(static_cast<int32_t>(t));
  for (const auto& [pre, cases] : variants.fields) {
    gguf_writer w;  // the same vocabulary and merges, relabelled with another pre-tokenizer
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", pre);
    w.add_strings("tokenizer.ggml.tokens", real.get_array("tokenizer.ggml.tokens")->strings);
    w.add_i32s("tokenizer.ggml.token_type", types);
    w.add_strings("tokenizer.ggml.merges", real.get_array("tokenizer.ggml.merges")->strings);
    w.add_u32("tokenizer.ggml.bos_token_id", 1);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    w.add_u32("tokenizer.ggml.unknown_token_id", 0);
    const tokenizer tok = tokenizer::from_gguf(gguf::file::parse(w.bytes()));
    troupe::test::json model;
    model.fields["cases"] = cases;
    CAPTURE(pre);
    const int num_matched = check_golden_cases(tok, model);
    MESSAGE(pre << ": " << num_matched << " of " << cases.items.size() << " golden strings match llama.cpp");
  }
}

TEST_CASE("the tiny SentencePiece vocab tokenizes exactly like llama.cpp") {
  const auto golden = troupe::test::json::load(k_golden_path)["spm"];
  const gguf::file file = gguf::file::open(std::string(TROUPE_TEST_DATA_DIR) + "/" + golden["model"].str);
  const tokenizer tok = tokenizer::from_gguf(file);
  CHECK(tok.model_name() == "llama");
  CHECK(tok.adds_bos());
  CHECK(tok.eog_ids() == golden["eog_ids"].ints());
  CHECK(hex64(fnv1a_pieces(tok, false)) == golden["pieces_fnv1a"].str);
  CHECK(hex64(fnv1a_pieces(tok, true)) == golden["pieces_special_fnv1a"].str);
  const int num_matched = check_golden_cases(tok, golden);
  MESSAGE(num_matched << " of " << golden["cases"].items.size() << " golden SPM strings match llama.cpp");
}

TEST_CASE("encode is safe from many threads at once") {
  TROUPE_REQUIRE_MODEL();
  const gguf::file file = gguf::file::open(TROUPE_TEST_MODEL);
  const tokenizer tok = tokenizer::from_gguf(file);
  std::string text;
  for (int i = 0; i < 200; ++i) text += "Line " + std::to_string(i) + ": café 日本 don't stop 😀\n";
  const std::vector<int32_t> expected = tok.encode(text, false, true);
  std::vector<std::vector<int32_t>> results(4);
  std::vector<std::thread> threads;
  for (auto& r : results) threads.emplace_back([&] { r = tok.encode(text, false, true); });
  for (auto& t : threads) t.join();
  for (const auto& r : results) CHECK(r == expected);
}

TEST_CASE("encoding 10 KB of text is fast (reported, not asserted)") {
  TROUPE_REQUIRE_MODEL();
  const gguf::file file = gguf::file::open(TROUPE_TEST_MODEL);
  const tokenizer tok = tokenizer::from_gguf(file);
  std::string text;
  while (text.size() < 10240) text += "The quick brown fox jumps over 13 lazy dogs; naïve café, 日本語! ";
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(text, false, false);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  CHECK(tok.decode(ids, false) == text);
  MESSAGE("encoded " << text.size() << " bytes into " << ids.size() << " tokens in " << ms << " ms");
}

TEST_CASE("token_to_piece refuses ids outside the vocabulary") {
  const tokenizer tok = tiny_bpe().build();
  try {
    tok.token_to_piece(tok.vocab_size(), true);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == error_code::invalid_argument);
  }
}

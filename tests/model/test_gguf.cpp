// Specification of the GGUF reader on valid files: round trips of every metadata type and of
// tensors, v2/v3, alignment, the typed getters, describe(), open() errors, and the real model.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"
#include "tests/util/gguf_writer.hpp"
#include "tests/util/quantize.hpp"
#include "tests/util/tiny_model.hpp"
#include "util/require_model.hpp"

using troupe::error_code;
using troupe::ggml_type;
using troupe::gguf::value_type;
using troupe::test::gguf_writer;
namespace gguf = troupe::gguf;

namespace {

gguf::file parse(const gguf_writer& w, uint32_t version = 3) { return gguf::file::parse(w.bytes(version)); }

std::vector<std::byte> f32_bytes(std::vector<float> values) {
  return troupe::test::quantize(ggml_type::f32, values);
}

// A file path under the temp dir that is removed when the test ends.
struct temp_path {
  std::string path;
  explicit temp_path(const std::string& name)
      : path((std::filesystem::temp_directory_path() / ("troupe_test_" + std::to_string(getpid()) + "_" + name))
                 .string()) {}
  ~temp_path() { std::remove(path.c_str()); }
};

error_code code_of_open(const std::string& path, std::string& message) {
  try {
    gguf::file::open(path);
  } catch (const troupe::error& e) {
    message = e.what();
    return e.code();
  }
  FAIL("open did not throw");
  return error_code::internal;
}

}  // namespace

TEST_CASE("gguf: every scalar metadata type round-trips with its type and value") {
  gguf_writer w;
  w.add_u8("u8", 200);
  w.add_i8("i8", -100);
  w.add_u16("u16", 60000);
  w.add_i16("i16", -30000);
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -2000000000);
  w.add_u64("u64", 18000000000000000000ull);
  w.add_i64("i64", -9000000000000000000ll);
  w.add_f32("f32", 0.125f);
  w.add_f64("f64", 1e300);
  w.add_bool("yes", true);
  w.add_bool("no", false);
  w.add_string("s", "héllo");
  const auto f = parse(w);

  REQUIRE(f.metadata().size() == 13);
  CHECK(f.metadata()[0].first == "u8");
  CHECK(f.find("u8")->type == value_type::u8);
  CHECK(f.get_int("u8") == 200);
  CHECK(f.get_int("i8") == -100);
  CHECK(f.get_int("u16") == 60000);
  CHECK(f.get_int("i16") == -30000);
  CHECK(f.get_int("u32") == 4000000000ll);
  CHECK(f.get_int("i32") == -2000000000);
  CHECK(std::get<uint64_t>(f.find("u64")->data) == 18000000000000000000ull);
  CHECK(f.get_int("i64") == -9000000000000000000ll);
  CHECK(f.get_float("f32") == 0.125);
  CHECK(f.find("f32")->type == value_type::f32);
  CHECK(f.get_float("f64") == 1e300);
  CHECK(f.get_bool("yes") == true);
  CHECK(f.get_bool("no") == false);
  CHECK(f.get_string("s") == "héllo");
  CHECK(f.find("absent") == nullptr);
  CHECK(!f.get_int("absent").has_value());
}

TEST_CASE("gguf: arrays of every element type round-trip") {
  gguf_writer w;
  w.add_strings("strs", {"a", "", "Ġthe"});
  w.add_i32s("ints", {1, -2, 3});
  w.add_f32s("floats", {0.5f, -1.5f});
  const auto raw_array = [](uint32_t type_id, uint64_t count, std::vector<uint8_t> elems) {
    std::vector<std::byte> p(12);
    std::memcpy(p.data(), &type_id, 4);
    std::memcpy(p.data() + 4, &count, 8);
    for (uint8_t b : elems) p.push_back(std::byte{b});
    return p;
  };
  w.add_raw("u8s", 9, raw_array(0, 3, {1, 2, 255}));
  w.add_raw("bools", 9, raw_array(7, 2, {1, 0}));
  w.add_raw("u64s", 9, raw_array(10, 1, {7, 0, 0, 0, 0, 0, 0, 0}));
  w.add_raw("f64s", 9, raw_array(12, 1, {0, 0, 0, 0, 0, 0, 0xf0, 0x3f}));  // 1.0
  w.add_raw("empty", 9, raw_array(5, 0, {}));
  const auto f = parse(w);

  CHECK(f.get_array("strs")->strings == std::vector<std::string>{"a", "", "Ġthe"});
  CHECK(f.get_array("strs")->element_type == value_type::string);
  CHECK(f.get_array("ints")->ints == std::vector<int64_t>{1, -2, 3});
  CHECK(f.get_array("floats")->floats == std::vector<double>{0.5, -1.5});
  CHECK(f.get_array("u8s")->ints == std::vector<int64_t>{1, 2, 255});
  CHECK(f.get_array("bools")->ints == std::vector<int64_t>{1, 0});
  CHECK(f.get_array("u64s")->ints == std::vector<int64_t>{7});
  CHECK(f.get_array("f64s")->floats == std::vector<double>{1.0});
  CHECK(f.get_array("empty")->size() == 0);
  CHECK(f.get_array("strs")->size() == 3);
  CHECK(f.get_array("absent") == nullptr);
}

TEST_CASE("gguf: a getter asked for the wrong type throws invalid_model naming the key") {
  gguf_writer w;
  w.add_string("name", "x");
  w.add_i32("count", 3);
  w.add_u64("huge", 18000000000000000000ull);
  const auto f = parse(w);
  CHECK_THROWS_WITH_AS(f.get_int("name"), doctest::Contains("'name'"), troupe::error);
  CHECK_THROWS_AS(f.get_string("count"), troupe::error);
  CHECK_THROWS_AS(f.get_bool("count"), troupe::error);
  CHECK_THROWS_AS(f.get_array("count"), troupe::error);
  CHECK_THROWS_WITH_AS(f.get_int("huge"), doctest::Contains("int64"), troupe::error);
  CHECK(f.get_float("count") == 3.0);
}

TEST_CASE("gguf: tensors round-trip with dims, type, size, offset and data") {
  gguf_writer w;
  w.add_tensor("a", ggml_type::f32, {3}, f32_bytes({1, 2, 3}));
  const std::vector<float> b_values(64 * 2, 0.25f);
  w.add_tensor("b", ggml_type::q8_0, {64, 2}, troupe::test::quantize(ggml_type::q8_0, b_values));
  w.add_tensor("c", ggml_type::f32, {1, 2, 3, 4}, f32_bytes(std::vector<float>(24, 7.0f)));
  const auto f = parse(w);

  REQUIRE(f.tensors().size() == 3);
  const auto* a = f.find_tensor("a");
  REQUIRE(a != nullptr);
  CHECK(a->num_dims == 1);
  CHECK(a->dims == std::array<int64_t, 4>{3, 1, 1, 1});
  CHECK(a->num_bytes == 12);
  CHECK(a->offset == 0);
  float first;
  std::memcpy(&first, a->data + 8, 4);
  CHECK(first == 3.0f);
  const auto* b = f.find_tensor("b");
  CHECK(b->type == ggml_type::q8_0);
  CHECK(b->num_bytes == 2 * 2 * 34);
  CHECK(b->offset == 32);  // 12 bytes of "a" padded to the default alignment
  CHECK(b->num_rows() == 2);
  const auto* c = f.find_tensor("c");
  CHECK(c->num_dims == 4);
  CHECK(c->num_elements() == 24);
  CHECK(c->data == f.tensors()[2].data);
  CHECK(f.find_tensor("missing") == nullptr);
}

TEST_CASE("gguf: version 2 and version 3 files read the same") {
  gguf_writer w;
  w.add_string("general.architecture", "llama");
  w.add_tensor("t", ggml_type::f32, {4}, f32_bytes({1, 2, 3, 4}));
  const auto v2 = parse(w, 2);
  const auto v3 = parse(w, 3);
  CHECK(v2.version() == 2);
  CHECK(v3.version() == 3);
  CHECK(v2.get_string("general.architecture") == "llama");
  CHECK(std::memcmp(v2.tensors()[0].data, v3.tensors()[0].data, 16) == 0);
}

TEST_CASE("gguf: without general.alignment the data section is aligned to 32 bytes") {
  gguf_writer w;
  w.add_string("k", "v");
  w.add_tensor("t", ggml_type::f32, {4}, f32_bytes({1, 2, 3, 4}));
  const auto f = parse(w);
  CHECK(f.alignment() == 32);
  CHECK(f.data_offset() % 32 == 0);
  CHECK(reinterpret_cast<uintptr_t>(f.tensors()[0].data) % 4 == 0);
}

TEST_CASE("gguf: general.alignment 64 moves the data section and the tensor offsets") {
  gguf_writer w;
  w.set_alignment(64);
  w.add_tensor("a", ggml_type::f32, {3}, f32_bytes({1, 2, 3}));
  w.add_tensor("b", ggml_type::f32, {2}, f32_bytes({4, 5}));
  const auto f = parse(w);
  CHECK(f.alignment() == 64);
  CHECK(f.data_offset() % 64 == 0);
  CHECK(f.find_tensor("b")->offset == 64);
  float v;
  std::memcpy(&v, f.find_tensor("b")->data, 4);
  CHECK(v == 4.0f);
}

TEST_CASE("gguf: a file with metadata and no tensors is valid") {
  gguf_writer w;
  w.add_u32("n", 1);
  const auto f = parse(w);
  CHECK(f.tensors().empty());
  CHECK(f.get_int("n") == 1);
}

TEST_CASE("gguf: open maps a file written to disk and reads it like parse") {
  temp_path tmp("open.gguf");
  gguf_writer w;
  w.add_string("general.name", "disk");
  w.add_tensor("t", ggml_type::f32, {2}, f32_bytes({1.5f, 2.5f}));
  w.write(tmp.path);
  auto f = gguf::file::open(tmp.path);
  auto moved = std::move(f);
  CHECK(moved.get_string("general.name") == "disk");
  float v;
  std::memcpy(&v, moved.find_tensor("t")->data + 4, 4);
  CHECK(v == 2.5f);
}

TEST_CASE("gguf: open reports a missing file, a directory and an empty file as io_error with the path") {
  std::string message;
  CHECK(code_of_open("/nonexistent/troupe.gguf", message) == error_code::io_error);
  CHECK(message.find("/nonexistent/troupe.gguf") != std::string::npos);
  CHECK(message.find("No such file") != std::string::npos);

  const auto dir = std::filesystem::temp_directory_path().string();
  CHECK(code_of_open(dir, message) == error_code::io_error);
  CHECK(message.find("directory") != std::string::npos);

  temp_path empty("empty.gguf");
  std::fclose(std::fopen(empty.path.c_str(), "wb"));
  CHECK(code_of_open(empty.path, message) == error_code::io_error);
  CHECK(message.find("empty") != std::string::npos);
}

TEST_CASE("gguf: open prefixes parse errors with the path") {
  temp_path tmp("bad.gguf");
  FILE* f = std::fopen(tmp.path.c_str(), "wb");
  std::fputs("NOPE and some more bytes to be long enough", f);
  std::fclose(f);
  std::string message;
  CHECK(code_of_open(tmp.path, message) == error_code::invalid_model);
  CHECK(message.find(tmp.path) != std::string::npos);
  CHECK(message.find("magic") != std::string::npos);
}

TEST_CASE("gguf: describe lists the header, metadata with long arrays cut, tensors and bytes by type") {
  gguf_writer w;
  w.add_string("general.architecture", "llama");
  w.add_i32s("many", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  w.add_f32("eps", 1e-5f);
  w.add_string("template", std::string(200, 'x') + "\n");
  w.add_tensor("token_embd.weight", ggml_type::f32, {4, 2}, f32_bytes(std::vector<float>(8, 1.0f)));
  const auto text = parse(w).describe();
  CHECK(text.find("GGUF version 3") != std::string::npos);
  CHECK(text.find("alignment: 32") != std::string::npos);
  CHECK(text.find("general.architecture (string) = \"llama\"") != std::string::npos);
  CHECK(text.find("many (array) = [i32 x 11] [0, 1, 2, 3, 4, 5, 6, 7, ...]") != std::string::npos);
  CHECK(text.find("eps (f32) = 1e-05") != std::string::npos);
  CHECK(text.find("\"... (201 bytes)") != std::string::npos);
  CHECK(text.find("token_embd.weight") != std::string::npos);
  CHECK(text.find("[4, 2]") != std::string::npos);
  CHECK(text.find("F32       1 tensors") != std::string::npos);
}

TEST_CASE("gguf: a file written by gguf-py (an independent writer) reads back every value") {
  const auto f = gguf::file::open(std::string(TROUPE_TEST_DATA_DIR) + "/gguf_py_sample.gguf");
  CHECK(f.version() == 3);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_int("t.u8") == 200);
  CHECK(f.get_int("t.i8") == -100);
  CHECK(f.get_int("t.u16") == 60000);
  CHECK(f.get_int("t.i16") == -30000);
  CHECK(f.get_int("t.u32") == 4000000000ll);
  CHECK(f.get_int("t.i32") == -2000000000);
  CHECK(std::get<uint64_t>(f.find("t.u64")->data) == 18000000000000000000ull);
  CHECK(f.get_int("t.i64") == -9000000000000000000ll);
  CHECK(f.get_float("t.f32") == 0.125);
  CHECK(f.get_float("t.f64") == 1e300);
  CHECK(f.get_bool("t.bool") == true);
  CHECK(f.get_string("t.str") == "héllo");
  CHECK(f.get_array("t.strs")->strings == std::vector<std::string>{"a", "", "Ġthe"});
  CHECK(f.get_array("t.ints")->ints == std::vector<int64_t>{1, -2, 3});
  CHECK(f.get_int("llama.block_count") == 2);
  REQUIRE(f.tensors().size() == 4);
  CHECK(f.find_tensor("norm.weight")->dims == std::array<int64_t, 4>{8, 1, 1, 1});
  float v;
  std::memcpy(&v, f.find_tensor("norm.weight")->data + 4 * 7, 4);
  CHECK(v == 7.0f);
  CHECK(f.find_tensor("blk.0.attn_q.weight")->type == ggml_type::q8_0);
  CHECK(f.find_tensor("blk.0.attn_q.weight")->dims == std::array<int64_t, 4>{32, 2, 1, 1});
  CHECK(f.find_tensor("blk.0.attn_k.weight")->type == ggml_type::q4_1);
  CHECK(f.find_tensor("half.weight")->type == ggml_type::f16);
  CHECK(f.find_tensor("half.weight")->dims == std::array<int64_t, 4>{4, 3, 1, 1});
}

TEST_CASE("gguf: the tiny llama model parses with llama metadata and tokenizer keys") {
  const auto f = gguf::file::parse(troupe::test::make_tiny_llama());
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_int("llama.block_count") == 2);
  CHECK(f.get_string("tokenizer.ggml.pre") == "smollm");
  const auto* tokens = f.get_array("tokenizer.ggml.tokens");
  REQUIRE(tokens != nullptr);
  CHECK(tokens->strings[1] == "<|im_start|>");
  CHECK(tokens->strings[3 + ' '] == "Ġ");
  CHECK(tokens->strings[3 + '\n'] == "Ċ");
  CHECK(f.get_int("llama.vocab_size") == static_cast<int64_t>(tokens->size()));
  CHECK(tokens->size() >= 300);
  CHECK(f.find_tensor("blk.1.ffn_down.weight")->type == ggml_type::q4_1);
  CHECK(f.find_tensor("output.weight") == nullptr);
  CHECK(f.tensors().size() == 2 * 9 + 2);
}

TEST_CASE("gguf: the tiny model writes the requested weight types and an untied output head") {
  troupe::test::tiny_model_options o;
  o.weight_type = ggml_type::q4_k;
  o.embedding_type = ggml_type::f16;
  o.embedding_dim = 256;
  o.ffn_dim = 512;
  o.num_layers = 1;
  o.tied_output = false;
  const auto f = gguf::file::parse(troupe::test::make_tiny_llama(o));
  CHECK(f.find_tensor("blk.0.attn_q.weight")->type == ggml_type::q4_k);
  CHECK(f.find_tensor("blk.0.ffn_down.weight")->dims == std::array<int64_t, 4>{512, 256, 1, 1});
  CHECK(f.find_tensor("blk.0.attn_k.weight")->dims == std::array<int64_t, 4>{256, 128, 1, 1});
  CHECK(f.find_tensor("token_embd.weight")->type == ggml_type::f16);
  CHECK(f.find_tensor("output.weight")->type == ggml_type::f16);
  CHECK(f.find_tensor("output_norm.weight")->type == ggml_type::f32);
  CHECK(f.get_int("llama.rope.dimension_count") == 64);
}

TEST_CASE("gguf: the tiny model is deterministic per seed and refuses rows that are not whole blocks") {
  troupe::test::tiny_model_options o;
  CHECK(troupe::test::make_tiny_llama(o) == troupe::test::make_tiny_llama(o));
  o.seed = 2;
  CHECK(troupe::test::make_tiny_llama(o) != troupe::test::make_tiny_llama({}));
  o.weight_type = ggml_type::q6_k;  // 256-value blocks do not divide 64-wide rows
  CHECK_THROWS_AS(troupe::test::make_tiny_llama(o), troupe::error);
}

TEST_CASE("gguf: every tiny vocabulary merge joins two tokens into a token of the vocabulary") {
  const auto vocab = troupe::test::make_tiny_vocab();
  CHECK(vocab.merges.size() == 64);
  CHECK(vocab.tokens.size() == vocab.token_types.size());
  CHECK(vocab.tokens[3 + 0x00] == "\u0100");
  CHECK(vocab.tokens[3 + 0xad] == troupe::test::byte_to_symbol(0xad));
  CHECK(troupe::test::byte_to_symbol(0xad) == "\u0143");  // the 68th and last remapped byte
  const std::set<std::string> tokens(vocab.tokens.begin(), vocab.tokens.end());
  CHECK(tokens.size() == vocab.tokens.size());
  for (const auto& merge : vocab.merges) {
    const auto space = merge.find(' ');
    REQUIRE(space != std::string::npos);
    const std::string left = merge.substr(0, space), right = merge.substr(space + 1);
    CHECK(tokens.count(left) == 1);
    CHECK(tokens.count(right) == 1);
    CHECK(tokens.count(left + right) == 1);
  }
  CHECK(tokens.count("Ġthe") == 1);
}

TEST_CASE("gguf: the default model has 272 tensors of the expected types and SmolLM2 metadata") {
  TROUPE_REQUIRE_MODEL();
  const std::string path = TROUPE_TEST_MODEL;
  const auto f = gguf::file::open(path);
  CHECK(f.tensors().size() == 272);
  int num_f32 = 0, num_q4_1 = 0, num_q8_0 = 0;
  for (const auto& t : f.tensors()) {
    num_f32 += t.type == ggml_type::f32;
    num_q4_1 += t.type == ggml_type::q4_1;
    num_q8_0 += t.type == ggml_type::q8_0;
  }
  CHECK(num_f32 == 61);
  CHECK(num_q4_1 == 210);
  CHECK(num_q8_0 == 1);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_int("llama.block_count") == 30);
  CHECK(f.get_int("llama.embedding_length") == 576);
  CHECK(f.get_int("llama.attention.head_count") == 9);
  CHECK(f.get_int("llama.attention.head_count_kv") == 3);
  CHECK(f.get_float("llama.rope.freq_base") == 100000.0);
  CHECK(f.get_array("tokenizer.ggml.tokens")->size() == 49152);
  CHECK(f.find_tensor("token_embd.weight")->type == ggml_type::q8_0);
  CHECK(f.find_tensor("token_embd.weight")->dims == std::array<int64_t, 4>{576, 49152, 1, 1});
  CHECK(f.find_tensor("output.weight") == nullptr);
}

namespace {

int64_t resident_bytes() {
  long total = 0, resident = 0;
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  REQUIRE(statm != nullptr);
  REQUIRE(std::fscanf(statm, "%ld %ld", &total, &resident) == 2);
  std::fclose(statm);
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

uint64_t checksum(const std::byte* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 1099511628211ull;
  return h;
}

}  // namespace

TEST_CASE("gguf: the default model tensor's mapped pages leave resident memory on release(), and its bytes stay readable") {
  TROUPE_REQUIRE_MODEL();
  const auto f = gguf::file::open(TROUPE_TEST_MODEL);
  const auto* biggest = &f.tensors().front();
  for (const auto& t : f.tensors()) {
    if (t.num_bytes > biggest->num_bytes) biggest = &t;
  }
  REQUIRE(biggest->num_bytes > 8u << 20);  // token_embd.weight: 17.7 MB
  const auto* data = static_cast<const std::byte*>(biggest->data);
  const uint64_t before = checksum(data, biggest->num_bytes);  // every page read: resident
  const int64_t resident_before = resident_bytes();
  f.release(data, biggest->num_bytes);
  const int64_t resident_after = resident_bytes();
  CHECK(resident_before - resident_after > static_cast<int64_t>(biggest->num_bytes) / 2);
  CHECK(checksum(data, biggest->num_bytes) == before);
  // Ranges outside the mapping, and null, are ignored.
  f.release(nullptr, 100);
  f.release(data, f.file_bytes() + 1);
  CHECK(checksum(data, biggest->num_bytes) == before);
}

TEST_CASE("gguf: release() on a parsed (heap) file changes nothing") {
  const auto bytes = troupe::test::make_tiny_llama();
  const auto f = gguf::file::parse(bytes);
  const auto& t = f.tensors().front();
  const auto* data = static_cast<const std::byte*>(t.data);
  const uint64_t before = checksum(data, t.num_bytes);
  f.release(data, t.num_bytes);
  CHECK(checksum(data, t.num_bytes) == before);
}

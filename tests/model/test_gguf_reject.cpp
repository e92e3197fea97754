// Specification of the GGUF reader on hostile input: each malformation is rejected with
// invalid_model and a message naming it; truncations and random mutations never crash.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>

#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"
#include "tests/util/gguf_writer.hpp"
#include "tests/util/quantize.hpp"

using troupe::error_code;
using troupe::ggml_type;
using troupe::test::gguf_writer;
namespace gguf = troupe::gguf;

namespace {

using bytes_t = std::vector<std::byte>;

struct rejection {
  error_code code;
  std::string message;
};

// The error parse() raises for `image`; fails the test if it parses or throws something else.
rejection reject(const bytes_t& image) {
  try {
    gguf::file::parse(image);
  } catch (const troupe::error& e) {
    return {e.code(), e.what()};
  } catch (const std::exception& e) {
    FAIL("parse threw a non-troupe exception: " << e.what());
  }
  FAIL("parse accepted a malformed file");
  return {error_code::internal, ""};
}

// Checks that the image is rejected as invalid_model with `fragment` in the message.
void check_rejected(const bytes_t& image, const std::string& fragment) {
  const rejection r = reject(image);
  CHECK(r.code == error_code::invalid_model);
  INFO("message: " << r.message);
  CHECK(r.message.find(fragment) != std::string::npos);
}

template <class T>
bytes_t le(T v) {
  bytes_t out(sizeof(T));
  std::memcpy(out.data(), &v, sizeof(T));
  return out;
}

bytes_t concat(std::initializer_list<bytes_t> parts) {
  bytes_t out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void patch_u32(bytes_t& image, size_t at, uint32_t v) { std::memcpy(image.data() + at, &v, 4); }
void patch_u64(bytes_t& image, size_t at, uint64_t v) { std::memcpy(image.data() + at, &v, 8); }

bytes_t f32_bytes(size_t n) { return troupe::test::quantize(ggml_type::f32, std::vector<float>(n, 1.0f)); }

constexpr uint32_t f32_id = 0;
constexpr uint32_t array_id = 9;

// A small valid file with a bit of everything, the base for truncation and mutation.
bytes_t sample_file() {
  gguf_writer w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.rope.freq_base", 10000.0f);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_strings("tokenizer.ggml.tokens", {"a", "b", "Ġthe"});
  w.add_i32s("tokenizer.ggml.token_type", {1, 1, 3});
  w.add_tensor("norm.weight", ggml_type::f32, {8}, f32_bytes(8));
  w.add_tensor("blk.0.attn_q.weight", ggml_type::q8_0, {32, 2},
               troupe::test::quantize(ggml_type::q8_0, std::vector<float>(64, 0.5f)));
  w.add_tensor("blk.0.attn_k.weight", ggml_type::q4_1, {32, 1},
               troupe::test::quantize(ggml_type::q4_1, std::vector<float>(32, -0.5f)));
  return w.bytes();
}

}  // namespace

TEST_CASE("gguf reject: a wrong magic is not a GGUF file") {
  auto image = sample_file();
  image[0] = std::byte{'X'};
  check_rejected(image, "magic is 'XGUF'");
}

TEST_CASE("gguf reject: version 1 is unsupported and says so") {
  auto image = sample_file();
  patch_u32(image, 4, 1);
  check_rejected(image, "version 1 is not supported");
}

TEST_CASE("gguf reject: versions other than 2 and 3 are unsupported") {
  auto image = sample_file();
  patch_u32(image, 4, 4);
  check_rejected(image, "unsupported GGUF version 4");
  patch_u32(image, 4, 0x03000000);
  check_rejected(image, "big-endian");
}

TEST_CASE("gguf reject: a tensor count that cannot fit in the file is refused before allocating") {
  auto image = sample_file();
  patch_u64(image, 8, uint64_t{1} << 62);
  check_rejected(image, "tensor count 4611686018427387904 cannot fit");
}

TEST_CASE("gguf reject: a metadata count that cannot fit in the file is refused before allocating") {
  auto image = sample_file();
  patch_u64(image, 16, ~uint64_t{0});
  check_rejected(image, "metadata count");
}

TEST_CASE("gguf reject: a string longer than the rest of the file") {
  gguf_writer w;
  w.add_raw("name", 8, concat({le<uint64_t>(1000), bytes_t(3)}));
  check_rejected(w.bytes(), "key 'name': string length 1000");
}

TEST_CASE("gguf reject: a key longer than the rest of the file") {
  auto image = sample_file();
  patch_u64(image, 24, uint64_t{1} << 40);  // the first key's length
  check_rejected(image, "string length 1099511627776");
}

TEST_CASE("gguf reject: an unknown value type names the key") {
  gguf_writer w;
  w.add_raw("odd", 13, le<uint32_t>(0));
  check_rejected(w.bytes(), "key 'odd': unknown value type 13");
}

TEST_CASE("gguf reject: nested arrays") {
  gguf_writer w;
  w.add_raw("nested", array_id, concat({le<uint32_t>(array_id), le<uint64_t>(0)}));
  check_rejected(w.bytes(), "nested arrays");
}

TEST_CASE("gguf reject: an unknown array element type") {
  gguf_writer w;
  w.add_raw("arr", array_id, concat({le<uint32_t>(77), le<uint64_t>(0)}));
  check_rejected(w.bytes(), "unknown array element type 77");
}

TEST_CASE("gguf reject: an array count that cannot fit in the file is refused before allocating") {
  gguf_writer w;
  w.add_raw("arr", array_id, concat({le<uint32_t>(f32_id + 6), le<uint64_t>(uint64_t{1} << 60)}));
  check_rejected(w.bytes(), "cannot fit");
  gguf_writer strings;
  strings.add_raw("strs", array_id, concat({le<uint32_t>(8), le<uint64_t>(1000), le<uint64_t>(0)}));
  check_rejected(strings.bytes(), "array of 1000 string elements cannot fit");
}

TEST_CASE("gguf reject: a u64 array element above INT64_MAX") {
  gguf_writer w;
  w.add_raw("big", array_id, concat({le<uint32_t>(10), le<uint64_t>(1), le<uint64_t>(~uint64_t{0})}));
  check_rejected(w.bytes(), "larger than INT64_MAX");
}

TEST_CASE("gguf reject: duplicate metadata keys") {
  gguf_writer w;
  w.add_u32("llama.block_count", 2);
  w.add_u32("llama.block_count", 3);
  check_rejected(w.bytes(), "duplicate metadata key 'llama.block_count'");
}

TEST_CASE("gguf reject: duplicate tensor names") {
  gguf_writer w;
  w.add_tensor("t", ggml_type::f32, {4}, f32_bytes(4));
  w.add_tensor("t", ggml_type::f32, {4}, f32_bytes(4));
  check_rejected(w.bytes(), "duplicate tensor name 't'");
}

TEST_CASE("gguf reject: zero or more than four dimensions") {
  gguf_writer none;
  none.add_raw_tensor("t", f32_id, {}, 0);
  check_rejected(none.bytes(), "tensor 't': 0 dimensions (must be 1 to 4)");
  gguf_writer five;
  five.add_raw_tensor("t", f32_id, {1, 1, 1, 1, 1}, 0);
  check_rejected(five.bytes(), "5 dimensions");
}

TEST_CASE("gguf reject: a zero or negative dimension") {
  gguf_writer zero;
  zero.add_raw_tensor("t", f32_id, {4, 0}, 0);
  check_rejected(zero.bytes(), "tensor 't': dimension 1 is 0");
  gguf_writer negative;
  negative.add_raw_tensor("t", f32_id, {static_cast<uint64_t>(-4)}, 0);
  check_rejected(negative.bytes(), "dimension 0 is -4");
}

TEST_CASE("gguf reject: dimensions whose product overflows int64") {
  gguf_writer w;
  w.add_raw_tensor("t", f32_id, {uint64_t{1} << 32, uint64_t{1} << 32}, 0);
  check_rejected(w.bytes(), "element count overflows int64");
}

TEST_CASE("gguf reject: an unknown tensor type id") {
  gguf_writer w;
  w.add_raw_tensor("t", 4, {32}, 0);  // 4 was Q4_2, removed from ggml
  check_rejected(w.bytes(), "tensor 't': unknown tensor type id 4");
}

TEST_CASE("gguf reject: a row length that is not a whole number of blocks") {
  gguf_writer w;
  w.add_raw_tensor("t", 8, {33, 2}, 0);
  check_rejected(w.bytes(), "dims[0] = 33 is not a multiple of the Q8_0 block size 32");
}

TEST_CASE("gguf reject: a byte size that overflows") {
  gguf_writer w;
  w.add_raw_tensor("t", f32_id, {uint64_t{1} << 31, uint64_t{1} << 31}, 0);
  check_rejected(w.bytes(), "byte size overflows");
}

TEST_CASE("gguf reject: an alignment of zero or not a power of two") {
  for (uint32_t alignment : {0u, 3u, 48u}) {
    gguf_writer w;
    w.add_u32("general.alignment", alignment);
    check_rejected(w.bytes(), "general.alignment must be a non-zero power of two, got " + std::to_string(alignment));
  }
  gguf_writer text;
  text.add_string("general.alignment", "32");
  check_rejected(text.bytes(), "general.alignment must be an integer");
}

TEST_CASE("gguf reject: a tensor offset that is not a multiple of the alignment") {
  gguf_writer w;
  w.add_raw_tensor("t", f32_id, {4}, 4);
  check_rejected(w.bytes(), "tensor 't': offset 4 is not a multiple of the alignment 32");
}

TEST_CASE("gguf reject: tensor data past the end of the file names the tensor and the range") {
  gguf_writer w;
  w.add_tensor("a", ggml_type::f32, {8}, f32_bytes(8));
  w.add_raw_tensor("blk.0.attn_q.weight", f32_id, {4}, 1024);
  const bytes_t image = w.bytes();
  const auto r = reject(image);
  CHECK(r.code == error_code::invalid_model);
  CHECK(r.message.find("tensor 'blk.0.attn_q.weight': data [") != std::string::npos);
  CHECK(r.message.find("runs past the end of the file (" + std::to_string(image.size()) + " bytes)") !=
        std::string::npos);
}

TEST_CASE("gguf reject: an offset so large that offset + size wraps around") {
  gguf_writer w;
  w.add_raw_tensor("t", f32_id, {8}, ~uint64_t{31});
  check_rejected(w.bytes(), "runs past the end");
}

TEST_CASE("gguf reject: tensors whose data overlap") {
  gguf_writer w;
  w.add_tensor("a", ggml_type::f32, {16}, f32_bytes(16));
  w.add_tensor("b", ggml_type::f32, {16}, f32_bytes(16));
  w.add_raw_tensor("c", f32_id, {16}, 32);  // inside "a"
  check_rejected(w.bytes(), "overlaps tensor");
}

TEST_CASE("gguf reject: every truncation before the end of the tensor data throws invalid_model") {
  const bytes_t image = sample_file();
  const auto full = gguf::file::parse(image);
  const auto& last = full.tensors().back();
  const size_t data_end = full.data_offset() + last.offset + last.num_bytes;
  for (size_t n = 0; n < data_end; ++n) {
    INFO("prefix of " << n << " bytes");
    const bytes_t prefix(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK(reject(prefix).code == error_code::invalid_model);
  }
  for (size_t n = data_end; n <= image.size(); ++n) {  // only trailing padding is missing
    CHECK_NOTHROW(gguf::file::parse(bytes_t(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(n))));
  }
}

TEST_CASE("gguf reject: thousands of random mutations either parse consistently or throw troupe::error") {
  const bytes_t original = sample_file();
  std::mt19937_64 rng(20240611);
  int num_parsed = 0;
  for (int iteration = 0; iteration < 4000; ++iteration) {
    bytes_t image = original;
    const int num_edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < num_edits; ++e) {
      const size_t at = rng() % image.size();
      switch (rng() % 5) {
        case 0: image[at] ^= std::byte{static_cast<uint8_t>(1u << (rng() % 8))}; break;
        case 1: image[at] = std::byte{static_cast<uint8_t>(rng())}; break;
        case 2: {  // an interesting 64-bit value in place of a count, length or offset
          const uint64_t values[] = {0, 1, 31, 32, 0x7fffffffffffffffull, 0x8000000000000000ull, ~uint64_t{0},
                                     uint64_t{1} << 32};
          if (at + 8 <= image.size()) patch_u64(image, at, values[rng() % 8]);
          break;
        }
        case 3: image.resize(at + 1); break;
        default: image.insert(image.begin() + static_cast<std::ptrdiff_t>(at), std::byte{static_cast<uint8_t>(rng())});
      }
    }
    try {
      const auto f = gguf::file::parse(image);
      ++num_parsed;
      CHECK(!f.describe().empty());
      for (const auto& t : f.tensors()) {
        REQUIRE(f.data_offset() + t.offset + t.num_bytes <= f.file_bytes());
        volatile std::byte touch = t.data[0];
        touch = t.data[t.num_bytes - 1];
        (void)touch;
      }
    } catch (const troupe::error& e) {
      CHECK(e.code() == error_code::invalid_model);
    } catch (const std::exception& e) {
      FAIL("mutation " << iteration << " threw a non-troupe exception: " << e.what());
    }
  }
  MESSAGE(num_parsed << " of 4000 mutations still parsed");
}

namespace {

// Byte position of the type id in the tensor info of `name` (the name's bytes are unique).
size_t type_id_position(const bytes_t& image, const std::string& name, uint32_t num_dims) {
  const auto* begin = reinterpret_cast<const char*>(image.data());
  const std::string haystack(begin, image.size());
  const size_t at = haystack.find(name);
  REQUIRE(at != std::string::npos);
  return at + name.size() + 4 + 8 * num_dims;
}

}  // namespace

TEST_CASE("gguf reject: a tensor relabelled to a smaller type leaves unexplained room and is refused") {
  gguf_writer w;
  w.add_tensor("blk.0.attn_q.weight", ggml_type::q8_0, {32, 2},
               troupe::test::quantize(ggml_type::q8_0, std::vector<float>(64, 0.5f)));
  w.add_tensor("norm.weight", ggml_type::f32, {8}, f32_bytes(8));
  bytes_t image = w.bytes();
  CHECK_NOTHROW(gguf::file::parse(image));
  patch_u32(image, type_id_position(image, "blk.0.attn_q.weight", 2), 2);  // Q8_0 -> Q4_0
  check_rejected(image, "was its type changed?");
}

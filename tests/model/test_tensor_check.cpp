// Specification of the load-time scan of tensor values: a model whose tensors hold NaN or
// infinity (in a float element or in a quantized block's scale) is refused with the tensor
// named; a sound model passes.
#include <doctest/doctest.h>

#include <cstring>

#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/tensor_check.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

using bytes_t = std::vector<std::byte>;

// The tiny model with the 16-bit value at byte `at` of tensor `name`'s data replaced.
bytes_t with_u16(const std::string& name, size_t at, uint16_t v) {
  bytes_t image = test::make_tiny_llama();
  const auto f = gguf::file::parse(image);
  const auto* t = f.find_tensor(name);
  REQUIRE(t != nullptr);
  std::memcpy(image.data() + f.data_offset() + t->offset + at, &v, sizeof v);
  return image;
}

std::string refusal(const bytes_t& image) {
  const auto f = gguf::file::parse(image);
  try {
    check_tensor_values(f);
  } catch (const error& e) {
    CHECK(e.code() == error_code::invalid_model);
    return e.what();
  }
  FAIL("check_tensor_values accepted a corrupt model");
  return {};
}

constexpr uint16_t f16_nan = 0x7e00;
constexpr uint16_t f16_inf = 0x7c00;

}  // namespace

TEST_CASE("tensor check: the tiny model passes") {
  const auto f = gguf::file::parse(test::make_tiny_llama());
  CHECK_NOTHROW(check_tensor_values(f));
}

TEST_CASE("tensor check: NaN in a quantized block's scale is refused, naming the tensor and block") {
  // token_embd.weight is Q8_0 in the tiny model: the scale d is the block's first two bytes.
  const auto message = refusal(with_u16("token_embd.weight", 0, f16_nan));
  CHECK(message.find("token_embd.weight") != std::string::npos);
  CHECK(message.find("NaN") != std::string::npos);
  CHECK(message.find("block 0") != std::string::npos);
}

TEST_CASE("tensor check: infinity in a Q4_1 block's minimum is refused") {
  const auto message = refusal(with_u16("blk.0.attn_q.weight", 2, f16_inf));
  CHECK(message.find("blk.0.attn_q.weight") != std::string::npos);
  CHECK(message.find("infinity") != std::string::npos);
  CHECK(message.find("minimum m") != std::string::npos);
}

TEST_CASE("tensor check: NaN in an F32 tensor is refused") {
  // The high half of the first float of output_norm.weight: 0x7fc0 makes it a NaN.
  const auto message = refusal(with_u16("output_norm.weight", 2, 0x7fc0));
  CHECK(message.find("output_norm.weight") != std::string::npos);
  CHECK(message.find("element 0") != std::string::npos);
}

TEST_CASE("tensor check: the last block of a large tensor is always among the samples") {
  bytes_t image = test::make_tiny_llama();
  const auto f = gguf::file::parse(image);
  const auto* t = f.find_tensor("token_embd.weight");
  REQUIRE(t != nullptr);
  const size_t last_block = t->num_bytes / 34 - 1;
  const uint16_t nan = f16_nan;
  std::memcpy(image.data() + f.data_offset() + t->offset + last_block * 34, &nan, sizeof nan);
  const auto g = gguf::file::parse(image);
  CHECK_THROWS_AS(check_tensor_values(g, 2), error);
}

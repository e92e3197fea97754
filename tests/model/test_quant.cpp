// Specification of model/quant.hpp: dequantization of every supported type against golden
// data from gguf-py and hand-computed blocks, fp16/bf16 conversions, and the test quantizers.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "troupe/model/error.hpp"
#include "troupe/model/quant.hpp"
#include "tests/util/quantize.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace troupe;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Distance in representable floats (0 for equal values, including +0 and -0).
int64_t ulp_distance(float a, float b) {
  if (a == b) return 0;
  const auto ordered = [](float f) {
    const auto u = static_cast<int64_t>(bits_of(f));
    return (u & 0x80000000) ? -(u & 0x7fffffff) : u;
  };
  return std::llabs(ordered(a) - ordered(b));
}

struct golden_record {
  uint32_t type_id;
  std::vector<std::byte> bytes;
  std::vector<float> expected;
};

std::vector<golden_record> read_golden() {
  std::ifstream in(std::string(TROUPE_TEST_DATA_DIR) + "/dequant_golden.bin", std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "tests/data/dequant_golden.bin is missing (tests/data/make_dequant_golden.py)");
  std::vector<golden_record> out;
  uint32_t header[3];
  while (in.read(reinterpret_cast<char*>(header), sizeof header)) {
    golden_record r{header[0], std::vector<std::byte>(header[2]), std::vector<float>(header[1])};
    in.read(reinterpret_cast<char*>(r.bytes.data()), header[2]);
    in.read(reinterpret_cast<char*>(r.expected.data()), static_cast<std::streamsize>(header[1]) * 4);
    REQUIRE(in.good());
    out.push_back(std::move(r));
  }
  return out;
}

template <class Block>
std::vector<float> dequantize_one(ggml_type type, const Block& b) {
  std::vector<float> out(static_cast<size_t>(traits_of(type).block_elements));
  dequantize_row(type, &b, out.data(), static_cast<int64_t>(out.size()));
  return out;
}

std::vector<float> random_normal(size_t n, uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> out(n);
  for (float& x : out) x = normal(rng);
  return out;
}

}  // namespace

TEST_CASE("quant: dequantize_row matches gguf-py's dequantizers on random blocks of every type") {
  const auto records = read_golden();
  CHECK(records.size() == 11);
  for (const auto& r : records) {
    const auto type = static_cast<ggml_type>(r.type_id);
    INFO("type " << traits_of(type).name);
    std::vector<float> got(r.expected.size());
    dequantize_row(type, r.bytes.data(), got.data(), static_cast<int64_t>(got.size()));
    int num_inexact = 0;
    int64_t worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const int64_t d = ulp_distance(got[i], r.expected[i]);
      num_inexact += d != 0;
      worst = std::max(worst, d);
    }
    CHECK(worst <= 1);
    if (num_inexact != 0) MESSAGE(traits_of(type).name << ": " << num_inexact << " values differ by 1 ulp");
  }
}

TEST_CASE("quant: Q4_0 is (nibble - 8) * d with low nibbles first") {
  block_q4_0 b{};
  b.d = fp32_to_fp16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const auto x = dequantize_one(ggml_type::q4_0, b);
  CHECK(x[0] == -4.0f);
  CHECK(x[15] == 3.5f);
  CHECK(x[16] == 3.5f);
  CHECK(x[31] == -4.0f);
}

TEST_CASE("quant: Q4_1 is nibble * d + m") {
  block_q4_1 b{};
  b.d = fp32_to_fp16(0.25f);
  b.m = fp32_to_fp16(-1.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 << 4));
  const auto x = dequantize_one(ggml_type::q4_1, b);
  CHECK(x[0] == -1.0f);
  CHECK(x[4] == 0.0f);
  CHECK(x[16] == 2.75f);
}

TEST_CASE("quant: Q5_0 takes each element's fifth bit from qh and subtracts 16") {
  block_q5_0 b{};
  b.d = fp32_to_fp16(1.0f);
  const uint32_t qh = 0xffff0000u;  // fifth bit set for elements 16..31
  std::memcpy(b.qh, &qh, 4);
  b.qs[3] = 0x52;
  const auto x = dequantize_one(ggml_type::q5_0, b);
  CHECK(x[0] == -16.0f);
  CHECK(x[3] == -14.0f);
  CHECK(x[16] == 0.0f);
  CHECK(x[19] == 5.0f);
}

TEST_CASE("quant: Q5_1 is (nibble | fifth bit) * d + m") {
  block_q5_1 b{};
  b.d = fp32_to_fp16(2.0f);
  b.m = fp32_to_fp16(0.5f);
  b.qh[0] = 1;  // element 0's fifth bit
  for (auto& q : b.qs) q = 0x21;
  const auto x = dequantize_one(ggml_type::q5_1, b);
  CHECK(x[0] == 34.5f);
  CHECK(x[1] == 2.5f);
  CHECK(x[16] == 4.5f);
}

TEST_CASE("quant: Q8_0 is q * d") {
  block_q8_0 b{};
  b.d = fp32_to_fp16(0.125f);
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
  const auto x = dequantize_one(ggml_type::q8_0, b);
  CHECK(x[0] == -2.0f);
  CHECK(x[16] == 0.0f);
  CHECK(x[31] == 1.875f);
}

TEST_CASE("quant: Q4_K unpacks 6-bit scales and mins, including the high bits of sub-blocks 4-7") {
  block_q4_k b{};
  b.d = fp32_to_fp16(1.0f);
  b.dmin = fp32_to_fp16(0.5f);
  b.scales[0] = 2;     // sub-block 0: sc 2
  b.scales[4] = 4;     //              mn 4
  b.scales[1] = 0x80;  // sub-block 5: sc high bits 2
  b.scales[5] = 0x40;  //              mn high bits 1
  b.scales[9] = 0x13;  //              sc low 3, mn low 1 -> sc 35, mn 17
  for (auto& q : b.qs) q = 0x31;
  const auto x = dequantize_one(ggml_type::q4_k, b);
  CHECK(x[0] == 0.0f);     // 1*2*1 - 0.5*4
  CHECK(x[40] == 0.0f);    // sub-block 1 has sc 0, mn 0
  CHECK(x[160] == 96.5f);  // sub-block 5 (chunk 2, high nibble 3): 35*3 - 0.5*17
  CHECK(x[191] == 96.5f);
}

TEST_CASE("quant: Q6_K combines ql and qh into 6-bit values with signed 16-element scales") {
  block_q6_k b{};
  b.d = fp32_to_fp16(0.5f);
  b.ql[0] = 0x5a;
  b.qh[0] = 0xe4;
  b.scales[0] = 3;
  b.scales[2] = -1;
  b.scales[4] = 2;
  b.scales[6] = 1;
  const auto x = dequantize_one(ggml_type::q6_k, b);
  CHECK(x[0] == -33.0f);  // (10 - 32) * 3 * 0.5
  CHECK(x[1] == -48.0f);  // (0 - 32) * 3 * 0.5
  CHECK(x[32] == 8.0f);   // (16 - 32) * -1 * 0.5
  CHECK(x[64] == 5.0f);   // (37 - 32) * 2 * 0.5
  CHECK(x[96] == 8.0f);   // (48 - 32) * 1 * 0.5
  CHECK(x[128] == 0.0f);  // second half: scales 8.. are 0
}

TEST_CASE("quant: F16, BF16 and F32 rows convert element by element") {
  const uint16_t halves[] = {0x3c00, 0xc000, 0x7c00, 0x0001};
  float out[4];
  dequantize_row(ggml_type::f16, halves, out, 4);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -2.0f);
  CHECK(std::isinf(out[2]));
  CHECK(out[3] == std::ldexp(1.0f, -24));
  const uint16_t brains[] = {0x3f80, 0xc040};
  dequantize_row(ggml_type::bf16, brains, out, 2);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -3.0f);
  const float floats[] = {1.5f, -0.0f};
  dequantize_row(ggml_type::f32, floats, out, 2);
  CHECK(out[0] == 1.5f);
  CHECK(std::signbit(out[1]));
}

TEST_CASE("quant: dequantizing a type troupe does not support throws unsupported") {
  block_q8_1 b{};
  float out[32];
  try {
    dequantize_row(ggml_type::q8_1, &b, out, 32);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == error_code::unsupported);
    CHECK(std::string(e.what()).find("Q8_1") != std::string::npos);
  }
}

TEST_CASE("quant: row_bytes counts whole blocks and refuses partial blocks and overflow") {
  CHECK(row_bytes(ggml_type::q4_1, 576) == 18 * 20);
  CHECK(row_bytes(ggml_type::q6_k, 512) == 2 * 210);
  CHECK(row_bytes(ggml_type::f16, 3) == 6);
  CHECK(!row_bytes(ggml_type::q8_0, 33).has_value());
  CHECK(!row_bytes(ggml_type::f32, int64_t{1} << 62).has_value());
  CHECK(!traits_of(4u).has_value());
}

TEST_CASE("quant: every fp16 bit pattern survives fp16 -> fp32 -> fp16") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    const uint16_t back = fp32_to_fp16(f);
    const bool is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) != 0;
    if (is_nan) {
      REQUIRE(std::isnan(f));
      REQUIRE(((back >> 10) & 0x1f) == 0x1f);
      REQUIRE((back & 0x3ff) != 0);
    } else {
      REQUIRE(back == h);
    }
  }
}

TEST_CASE("quant: every bf16 bit pattern survives bf16 -> fp32 -> bf16 and rounding is to nearest even") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const bool is_nan = ((b >> 7) & 0xff) == 0xff && (b & 0x7f) != 0;
    if (!is_nan) REQUIRE(fp32_to_bf16(bf16_to_fp32(static_cast<uint16_t>(b))) == b);
  }
  CHECK(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);      // halfway: down to even
  CHECK(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);  // halfway: up to even
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(std::nanf("")))));
}

#if defined(__x86_64__)
namespace {
__attribute__((target("f16c"))) uint16_t f16c_convert(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
}  // namespace

TEST_CASE("quant: fp32_to_fp16 rounds exactly like the F16C instruction") {
  if (!__builtin_cpu_supports("f16c")) {
    MESSAGE("skipped: this CPU has no F16C");
    return;
  }
  std::mt19937_64 rng(7);
  int num_checked = 0;
  for (int i = 0; i < 400000; ++i) {
    uint32_t bits = static_cast<uint32_t>(rng());
    if (i % 2 == 0) {  // half the samples near fp16's range, where rounding happens
      const uint32_t exponent = 127 - 27 + static_cast<uint32_t>(rng() % 45);
      bits = (bits & 0x807fffffu) | (exponent << 23);
    }
    if (i % 8 == 1) bits = (bits & 0xffffe000u) | 0x1000u;  // exact halfway cases
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    INFO("input bits 0x" << std::hex << bits);
    REQUIRE(fp32_to_fp16(f) == f16c_convert(f));
    ++num_checked;
  }
  CHECK(num_checked > 390000);
}
#endif

TEST_CASE("quant: the test quantizers round-trip random rows within a fraction of the range") {
  struct expectation {
    ggml_type type;
    float max_error_over_absmax;
  };
  const expectation cases[] = {
      {ggml_type::f16, 1e-3f},   {ggml_type::bf16, 8e-3f},  {ggml_type::q8_0, 0.01f},
      {ggml_type::q4_0, 0.13f},  {ggml_type::q4_1, 0.07f},  {ggml_type::q5_0, 0.07f},
      {ggml_type::q5_1, 0.035f}, {ggml_type::q4_k, 0.1f},   {ggml_type::q5_k, 0.05f},
      {ggml_type::q6_k, 0.05f},
  };
  const auto values = random_normal(1024, 3, 0.02f);
  float absmax = 0;
  for (float v : values) absmax = std::max(absmax, std::fabs(v));
  for (const auto& c : cases) {
    INFO("type " << traits_of(c.type).name);
    const auto bytes = test::quantize(c.type, values);
    CHECK(bytes.size() == *row_bytes(c.type, 1024));
    std::vector<float> back(values.size());
    dequantize_row(c.type, bytes.data(), back.data(), static_cast<int64_t>(back.size()));
    float worst = 0;
    for (size_t i = 0; i < values.size(); ++i) worst = std::max(worst, std::fabs(back[i] - values[i]));
    CHECK(worst / absmax <= c.max_error_over_absmax);
  }
}

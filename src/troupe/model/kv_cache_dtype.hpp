// How the KV cache stores its values: fp16, or llama.cpp's 8-bit / 4-bit blocks of 32
// values along the head dimension (`--kv-cache-dtype`, llama.cpp's -ctk/-ctv, vLLM's
// kv_cache_dtype). The bytes a row of values takes decide how many blocks a memory budget
// holds.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace troupe {

enum class kv_cache_dtype {
  f16,   // 2 bytes a value
  q8_0,  // per 32 values: fp16 scale d + 32 int8, value = d * q (34 bytes)
  q4_0,  // per 32 values: fp16 scale d + 16 bytes of nibbles, value = d * (q - 8) (18 bytes)
};

inline constexpr std::string_view kv_cache_dtype_choices = "f16, q8_0 or q4_0";

inline std::optional<kv_cache_dtype> parse_kv_cache_dtype(std::string_view name) {
  if (name == "f16") return kv_cache_dtype::f16;
  if (name == "q8_0") return kv_cache_dtype::q8_0;
  if (name == "q4_0") return kv_cache_dtype::q4_0;
  return std::nullopt;
}

inline constexpr std::string_view name_of(kv_cache_dtype dtype) {
  switch (dtype) {
    case kv_cache_dtype::q8_0: return "q8_0";
    case kv_cache_dtype::q4_0: return "q4_0";
    default: return "f16";
  }
}

// Values per quantization block (1 for f16: any row length is allowed).
inline constexpr int32_t kv_values_per_block(kv_cache_dtype dtype) { return dtype == kv_cache_dtype::f16 ? 1 : 32; }

// Bytes that hold one row of num_values (a multiple of kv_values_per_block) values.
inline constexpr int64_t kv_row_bytes(kv_cache_dtype dtype, int64_t num_values) {
  switch (dtype) {
    case kv_cache_dtype::q8_0: return num_values / 32 * 34;
    case kv_cache_dtype::q4_0: return num_values / 32 * 18;
    default: return num_values * 2;
  }
}

// Bytes of one KV block: K and V of block_size positions, kv_dim values each, every layer.
inline constexpr int64_t kv_block_bytes(kv_cache_dtype dtype, int32_t num_layers, int32_t block_size, int32_t kv_dim) {
  return 2LL * num_layers * block_size * kv_row_bytes(dtype, kv_dim);
}

}  // namespace troupe

#include "troupe/model/quant.hpp"

#include <limits>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

std::optional<type_traits> traits_of(uint32_t type_id) {
  switch (type_id) {
    case 0: return type_traits{"F32", 1, 4, true};
    case 1: return type_traits{"F16", 1, 2, true};
    case 2: return type_traits{"Q4_0", 32, 18, true};
    case 3: return type_traits{"Q4_1", 32, 20, true};
    case 6: return type_traits{"Q5_0", 32, 22, true};
    case 7: return type_traits{"Q5_1", 32, 24, true};
    case 8: return type_traits{"Q8_0", 32, 34, true};
    case 9: return type_traits{"Q8_1", 32, 36, false};
    case 10: return type_traits{"Q2_K", 256, 84, false};
    case 11: return type_traits{"Q3_K", 256, 110, false};
    case 12: return type_traits{"Q4_K", 256, 144, true};
    case 13: return type_traits{"Q5_K", 256, 176, true};
    case 14: return type_traits{"Q6_K", 256, 210, true};
    case 15: return type_traits{"Q8_K", 256, 292, false};
    case 30: return type_traits{"BF16", 1, 2, true};
    default: return std::nullopt;
  }
}

type_traits traits_of(ggml_type type) {
  if (auto t = traits_of(static_cast<uint32_t>(type))) return *t;
  throw error(error_code::internal, "unknown ggml type " + std::to_string(static_cast<uint32_t>(type)));
}

std::optional<uint64_t> row_bytes(ggml_type type, int64_t num_elements) {
  const auto t = traits_of(static_cast<uint32_t>(type));
  if (!t || num_elements < 0 || num_elements % t->block_elements != 0) return std::nullopt;
  const uint64_t blocks = static_cast<uint64_t>(num_elements / t->block_elements);
  if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(t->block_bytes)) return std::nullopt;
  return blocks * static_cast<uint64_t>(t->block_bytes);
}

namespace {

template <class Block, int N>
void dequantize_blocks(const void* row, float* out, int64_t num_elements) {
  const auto* blocks = static_cast<const Block*>(row);
  for (int64_t i = 0; i < num_elements / N; ++i) dequantize_block(blocks[i], out + i * N);
}

}  // namespace

void dequantize_row(ggml_type type, const void* row, float* out, int64_t num_elements) {
  switch (type) {
    case ggml_type::f32:
      std::memcpy(out, row, static_cast<size_t>(num_elements) * sizeof(float));
      return;
    case ggml_type::f16: {
      const auto* h = static_cast<const uint16_t*>(row);
      for (int64_t i = 0; i < num_elements; ++i) out[i] = fp16_to_fp32(h[i]);
      return;
    }
    case ggml_type::bf16: {
      const auto* h = static_cast<const uint16_t*>(row);
      for (int64_t i = 0; i < num_elements; ++i) out[i] = bf16_to_fp32(h[i]);
      return;
    }
    case ggml_type::q4_0: return dequantize_blocks<block_q4_0, qk32>(row, out, num_elements);
    case ggml_type::q4_1: return dequantize_blocks<block_q4_1, qk32>(row, out, num_elements);
    case ggml_type::q5_0: return dequantize_blocks<block_q5_0, qk32>(row, out, num_elements);
    case ggml_type::q5_1: return dequantize_blocks<block_q5_1, qk32>(row, out, num_elements);
    case ggml_type::q8_0: return dequantize_blocks<block_q8_0, qk32>(row, out, num_elements);
    case ggml_type::q4_k: return dequantize_blocks<block_q4_k, qk_k>(row, out, num_elements);
    case ggml_type::q5_k: return dequantize_blocks<block_q5_k, qk_k>(row, out, num_elements);
    case ggml_type::q6_k: return dequantize_blocks<block_q6_k, qk_k>(row, out, num_elements);
    default:
      throw error(error_code::unsupported,
                  "cannot dequantize tensor type " + std::string(traits_of(type).name));
  }
}

}  // namespace troupe

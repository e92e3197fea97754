// Tensor-parallel sharding of a llama layer's weights over N ranks (Megatron style):
// q/k/v and gate/up are split by output rows (whole heads for attention), attn_output and
// ffn_down by input columns, so that each rank's attention and FFN are independent and one
// all-reduce after each of the two column-split products sums the partial outputs. Norms,
// embeddings and the output head are replicated. Host-side byte slicing of quantized rows,
// tested on the CPU against dequantized slices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "troupe/model/model_config.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::gpu {

enum class shard_kind { replicated, rows, columns };

// By GGUF tensor name ("blk.3.attn_q.weight" -> rows).
shard_kind shard_kind_of(std::string_view tensor_name);

// A rectangle of a [rows x cols] matrix (rows of cols values, as GGUF stores them).
struct shard_range {
  int64_t row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
  int64_t num_rows() const { return row_end - row_begin; }
  int64_t num_cols() const { return col_end - col_begin; }
};

// Rank `rank` of num_ranks's share. row_granule: rows per indivisible unit (head_dim for
// q/k/v, 1 for the FFN); column splits must fall on whole quantization blocks. Throws
// troupe::error(invalid_argument) naming what does not divide.
shard_range shard_of(shard_kind kind, int64_t rows, int64_t cols, int32_t rank, int32_t num_ranks,
                     int64_t row_granule, ggml_type type);

// The shard's bytes, rows of shard.num_cols() values each, contiguous.
std::vector<std::byte> extract_shard(ggml_type type, const void* data, int64_t rows, int64_t cols,
                                     const shard_range& shard);

// Each rank's share of the model's heads and FFN width; throws when num_ranks does not
// divide num_heads, num_kv_heads or ffn_dim.
struct rank_dims {
  int32_t num_heads = 0, num_kv_heads = 0, ffn_dim = 0;
};
rank_dims rank_dims_of(const model_config& config, int32_t num_ranks);

}  // namespace troupe::gpu

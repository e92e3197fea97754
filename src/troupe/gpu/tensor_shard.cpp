#include "troupe/gpu/tensor_shard.hpp"

#include <cstring>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe::gpu {

shard_kind shard_kind_of(std::string_view name) {
  const auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
  if (has(".attn_q.") || has(".attn_k.") || has(".attn_v.") || has(".ffn_gate.") || has(".ffn_up.")) {
    return shard_kind::rows;
  }
  if (has(".attn_output.") || has(".ffn_down.")) return shard_kind::columns;
  return shard_kind::replicated;
}

shard_range shard_of(shard_kind kind, int64_t rows, int64_t cols, int32_t rank, int32_t num_ranks,
                     int64_t row_granule, ggml_type type) {
  if (num_ranks < 1 || rank < 0 || rank >= num_ranks) {
    throw error(error_code::invalid_argument, "rank " + std::to_string(rank) + " of " + std::to_string(num_ranks));
  }
  shard_range r{0, rows, 0, cols};
  if (kind == shard_kind::replicated || num_ranks == 1) return r;
  if (kind == shard_kind::rows) {
    if (row_granule < 1 || rows % (row_granule * num_ranks) != 0) {
      throw error(error_code::invalid_argument, std::to_string(rows) + " rows do not split into " +
                                                    std::to_string(num_ranks) + " ranks of whole " +
                                                    std::to_string(row_granule) + "-row units");
    }
    const int64_t per = rows / num_ranks;
    r.row_begin = per * rank;
    r.row_end = r.row_begin + per;
    return r;
  }
  const int64_t block = traits_of(type).block_elements;
  if (cols % num_ranks != 0 || (cols / num_ranks) % block != 0) {
    throw error(error_code::invalid_argument, std::to_string(cols) + " columns of " +
                                                  std::string(traits_of(type).name) + " do not split into " +
                                                  std::to_string(num_ranks) + " ranks of whole " +
                                                  std::to_string(block) + "-value blocks");
  }
  const int64_t per = cols / num_ranks;
  r.col_begin = per * rank;
  r.col_end = r.col_begin + per;
  return r;
}

std::vector<std::byte> extract_shard(ggml_type type, const void* data, int64_t rows, int64_t cols,
                                     const shard_range& s) {
  const auto t = traits_of(type);
  if (s.row_begin < 0 || s.row_end > rows || s.col_begin < 0 || s.col_end > cols || s.row_begin > s.row_end ||
      s.col_begin > s.col_end || s.col_begin % t.block_elements != 0 || s.col_end % t.block_elements != 0) {
    throw error(error_code::invalid_argument, "shard outside the matrix or not on block boundaries");
  }
  const int64_t row_bytes = cols / t.block_elements * t.block_bytes;
  const int64_t begin = s.col_begin / t.block_elements * t.block_bytes;
  const int64_t len = s.num_cols() / t.block_elements * t.block_bytes;
  std::vector<std::byte> out((size_t)(len * s.num_rows()));
  const auto* src = static_cast<const std::byte*>(data);
  for (int64_t r = 0; r < s.num_rows(); ++r) {
    std::memcpy(out.data() + r * len, src + (s.row_begin + r) * row_bytes + begin, (size_t)len);
  }
  return out;
}

rank_dims rank_dims_of(const model_config& c, int32_t n) {
  if (n < 1) throw error(error_code::invalid_argument, "--tensor-parallel must be >= 1");
  const auto need = [&](int32_t value, const char* what) {
    if (value % n != 0) {
      throw error(error_code::invalid_argument, "--tensor-parallel " + std::to_string(n) + " does not divide the " +
                                                    what + " (" + std::to_string(value) + ")");
    }
    return value / n;
  };
  return {need(c.num_heads, "number of attention heads"), need(c.num_kv_heads, "number of KV heads"),
          need(c.ffn_dim, "FFN width")};
}

}  // namespace troupe::gpu

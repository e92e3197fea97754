// Uploads a GGUF model's weights to one device in their stored (quantized) form, each
// matrix cut to this rank's tensor-parallel shard (gpu/tensor_shard.hpp).
#include <string>

#include "troupe/gpu/cuda_internal.hpp"
#include "troupe/gpu/tensor_shard.hpp"
#include "troupe/model/error.hpp"

namespace troupe::gpu {

namespace {

const gguf::tensor_info& require(const gguf::file& f, const std::string& name, int64_t cols, int64_t rows) {
  const auto* t = f.find_tensor(name);
  if (!t) throw error(error_code::invalid_model, "missing tensor " + name);
  if (t->dims[0] != cols || t->num_rows() != rows) {
    throw error(error_code::invalid_model, "tensor " + name + " has shape [" + std::to_string(t->dims[0]) + ", " +
                                               std::to_string(t->num_rows()) + "], expected [" +
                                               std::to_string(cols) + ", " + std::to_string(rows) + "]");
  }
  return *t;
}

struct uploader {
  const gguf::file& file;
  weights_on_device& w;
  int32_t rank, num_ranks;

  const void* put(const void* data, size_t bytes, const std::string& what) {
    w.buffers.emplace_back(bytes, what.c_str());
    check_cuda(cudaMemcpy(w.buffers.back().as<void>(), data, bytes, cudaMemcpyHostToDevice), "upload weights");
    w.bytes += (int64_t)bytes;
    return w.buffers.back().as<void>();
  }

  const float* norm(const std::string& name, int64_t dim) {
    const auto& t = require(file, name, dim, 1);
    if (t.type != ggml_type::f32) throw error(error_code::unsupported, "norm tensor " + name + " must be F32");
    return static_cast<const float*>(put(t.data, t.num_bytes, name));
  }

  // row_granule: rows per head for q/k/v (whole heads per rank), 1 otherwise.
  device_matrix matrix(const std::string& name, int64_t cols, int64_t rows, int64_t row_granule = 1) {
    const auto& t = require(file, name, cols, rows);
    const auto range = shard_of(shard_kind_of(name), rows, cols, rank, num_ranks, row_granule, t.type);
    device_matrix m{nullptr, t.type, range.num_rows(), range.num_cols()};
    if (range.num_rows() == rows && range.num_cols() == cols) {
      m.data = put(t.data, t.num_bytes, name);
    } else {
      const auto bytes = extract_shard(t.type, t.data, rows, cols, range);
      m.data = put(bytes.data(), bytes.size(), name);
    }
    if (m.rows * m.cols > w.largest_matrix_elements) w.largest_matrix_elements = m.rows * m.cols;
    return m;
  }
};

}  // namespace

weights_on_device upload_weights(const gguf::file& file, const model_config& c, int32_t rank, int32_t num_ranks) {
  weights_on_device w;
  uploader up{file, w, rank, num_ranks};
  const int64_t d = c.embedding_dim;
  const auto& embd = require(file, "token_embd.weight", d, c.vocab_size);
  if (!traits_of(embd.type).is_supported) throw error(error_code::unsupported, "token_embd.weight type is not supported");
  w.token_embd = up.matrix("token_embd.weight", d, c.vocab_size);
  w.output = c.has_output_weight ? up.matrix("output.weight", d, c.vocab_size) : w.token_embd;
  if (!c.has_output_weight && w.token_embd.rows * w.token_embd.cols > w.largest_matrix_elements) {
    w.largest_matrix_elements = w.token_embd.rows * w.token_embd.cols;
  }
  w.output_norm = up.norm("output_norm.weight", d);
  for (int32_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    layer_on_device l;
    l.attn_norm = up.norm(p + "attn_norm.weight", d);
    l.ffn_norm = up.norm(p + "ffn_norm.weight", d);
    l.wq = up.matrix(p + "attn_q.weight", d, c.q_dim(), c.head_dim);
    l.wk = up.matrix(p + "attn_k.weight", d, c.kv_dim(), c.head_dim);
    l.wv = up.matrix(p + "attn_v.weight", d, c.kv_dim(), c.head_dim);
    l.wo = up.matrix(p + "attn_output.weight", c.q_dim(), d);
    l.w_gate = up.matrix(p + "ffn_gate.weight", d, c.ffn_dim);
    l.w_up = up.matrix(p + "ffn_up.weight", d, c.ffn_dim);
    l.w_down = up.matrix(p + "ffn_down.weight", c.ffn_dim, d);
    w.layers.push_back(l);
  }
  return w;
}

}  // namespace troupe::gpu

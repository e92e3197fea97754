// The llama-family forward pass on the CPU for one batch_plan: embeddings, then per layer
// RMSNorm -> q/k/v (+ biases, per-head q/k RMSNorm where the architecture has them) ->
// RoPE -> KV store (fp16 or quantized) -> paged attention -> output projection -> RMSNorm
// -> SwiGLU FFN, then the output head for the positions that need logits, then sampling.
#include "troupe/cpu/cpu_backend.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "troupe/cpu/attention.hpp"
#include "troupe/cpu/kv_quant.hpp"
#include "troupe/cpu/layer_ops.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/ops_math.hpp"
#include "troupe/model/plan_check.hpp"
#include "troupe/model/rope_table.hpp"
#include "troupe/model/speculative.hpp"

namespace troupe::cpu {

namespace {

// Row-parallel loops only pay for a pool wake-up when there are enough rows.
constexpr int64_t min_rows_for_pool = 8;

const gguf::tensor_info& require_tensor(const gguf::file& file, const std::string& name, int64_t dim0, int64_t dim1) {
  const auto* t = file.find_tensor(name);
  if (!t) throw error(error_code::invalid_model, "missing tensor " + name);
  if (t->dims[0] != dim0 || t->num_rows() != dim1) {
    throw error(error_code::invalid_model, "tensor " + name + " has shape [" + std::to_string(t->dims[0]) + ", " +
                                               std::to_string(t->num_rows()) + "], expected [" + std::to_string(dim0) +
                                               ", " + std::to_string(dim1) + "]");
  }
  return *t;
}

// A norm weight or a bias: one F32 row.
const float* require_norm(const gguf::file& file, const std::string& name, int64_t dim) {
  const auto& t = require_tensor(file, name, dim, 1);
  if (t.type != ggml_type::f32) throw error(error_code::unsupported, "tensor " + name + " must be F32");
  return reinterpret_cast<const float*>(t.data);
}

// The first num_packed_rows rows of the tensor (all when 0): a row-major prefix.
packed_matrix pack(const gguf::file& file, const std::string& name, int64_t cols, int64_t rows, int64_t& bytes,
                   int64_t num_packed_rows = 0) {
  const auto& t = require_tensor(file, name, cols, rows);
  const int64_t packed_rows = num_packed_rows > 0 ? std::min(num_packed_rows, rows) : rows;
  bytes += static_cast<int64_t>(t.num_bytes) / rows * packed_rows;
  auto packed = packed_matrix::pack(t.type, t.data, packed_rows, cols);
  // The packed copy is what the kernels read: the mapped bytes leave resident memory, so a
  // model takes its packed size once, not twice (rows read later, e.g. embedding lookups
  // of a tied output head, map again on demand).
  file.release(t.data, static_cast<size_t>(t.num_bytes));
  return packed;
}

template <class Fn>
void for_rows(thread_pool& pool, int64_t n, Fn&& fn) {
  if (n < min_rows_for_pool) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  pool.parallel_for(n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

}  // namespace

struct cpu_backend::workspace {
  std::vector<float> x, xn, q, k, v, attn, tmp, gate, up, hidden, logits, head;
  std::vector<int32_t> positions;
  std::vector<attention_sequence> attn_seqs;
  std::vector<int64_t> logit_rows;  // hidden row -> source token row
};

int32_t kv_pool_num_blocks(const model_config& config, const cpu_backend_options& options) {
  if (options.block_size < 1 || options.block_size > 1024) {
    throw error(error_code::invalid_argument, "block_size must be in [1, 1024]");
  }
  if (options.num_blocks > 0) return options.num_blocks;
  const int64_t bytes_per_block =
      kv_block_bytes(options.kv_dtype, config.num_layers, options.block_size, config.kv_dim());
  int64_t budget = options.kv_cache_bytes;
  if (budget <= 0) {
    const int64_t positions = std::max<int64_t>(4LL * config.context_length, 16384);
    budget = std::min<int64_t>(positions * bytes_per_block / options.block_size, 1LL << 30);
  }
  const int64_t num_blocks = budget / bytes_per_block;
  if (num_blocks < 1 || num_blocks > INT32_MAX / 2) {
    throw error(error_code::invalid_argument, "the KV cache must hold at least one block (kv_cache_bytes too small)");
  }
  return (int32_t)num_blocks;
}

cpu_backend::cpu_backend(std::shared_ptr<const gguf::file> file, const cpu_backend_options& options)
    : file_(std::move(file)),
      config_(model_config::from_gguf(*file_)),
      pool_owner_(options.pool ? options.pool : std::make_shared<thread_pool>(options.num_threads)),
      pool_(*pool_owner_),
      sampler_(config_.vocab_size, options.eog_ids),
      ws_(std::make_unique<workspace>()) {
  const auto& f = *file_;
  const int64_t d = config_.embedding_dim;
  token_embd_ = &require_tensor(f, "token_embd.weight", d, config_.vocab_size);
  if (!traits_of(token_embd_->type).is_supported) {
    throw error(error_code::unsupported, "token_embd.weight type is not supported");
  }
  output_norm_ = require_norm(f, "output_norm.weight", d);
  int64_t bytes = 0;
  if (options.num_output_rows < 0) throw error(error_code::invalid_argument, "num_output_rows must be >= 0");
  output_ = pack(f, config_.has_output_weight ? "output.weight" : "token_embd.weight", d, config_.vocab_size, bytes,
                 options.num_output_rows);
  layers_.reserve(config_.num_layers);
  for (int32_t i = 0; i < config_.num_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    layer_weights l{require_norm(f, p + "attn_norm.weight", d), require_norm(f, p + "ffn_norm.weight", d),
                    pack(f, p + "attn_q.weight", d, config_.q_dim(), bytes),
                    pack(f, p + "attn_k.weight", d, config_.kv_dim(), bytes),
                    pack(f, p + "attn_v.weight", d, config_.kv_dim(), bytes),
                    pack(f, p + "attn_output.weight", config_.q_dim(), d, bytes),
                    pack(f, p + "ffn_gate.weight", d, config_.ffn_dim, bytes),
                    pack(f, p + "ffn_up.weight", d, config_.ffn_dim, bytes),
                    pack(f, p + "ffn_down.weight", config_.ffn_dim, d, bytes)};
    if (config_.has_qkv_bias) {
      l.q_bias = require_norm(f, p + "attn_q.bias", config_.q_dim());
      l.k_bias = require_norm(f, p + "attn_k.bias", config_.kv_dim());
      l.v_bias = require_norm(f, p + "attn_v.bias", config_.kv_dim());
    }
    if (config_.has_qk_norm) {
      l.q_norm = require_norm(f, p + "attn_q_norm.weight", config_.head_dim);
      l.k_norm = require_norm(f, p + "attn_k_norm.weight", config_.head_dim);
    }
    layers_.push_back(std::move(l));
  }
  weight_bytes_per_token_ = bytes + (int64_t)(2 * config_.num_layers + 1) * d * 4;

  if (options.kv_dtype != kv_cache_dtype::f16 && (config_.head_dim % 32 != 0 || config_.head_dim > 512)) {
    throw error(error_code::unsupported, "--kv-cache-dtype " + std::string(name_of(options.kv_dtype)) +
                                             " needs head_dim in whole blocks of 32 values, at most 512 (this model's is " +
                                             std::to_string(config_.head_dim) + "); use f16");
  }
  if (options.kv_dtype != kv_cache_dtype::f16 && options.kv_rotation) {
    key_rotation_ = kv_key_rotation_size(config_.head_dim);
    value_rotation_ = kv_value_rotation_size(config_.head_dim);
  }
  const int32_t num_blocks = kv_pool_num_blocks(config_, options);
  kv_ = std::make_unique<kv_memory>(config_.num_layers, num_blocks, options.block_size, config_.kv_dim(),
                                    options.kv_dtype);
  if (options.num_swap_blocks < 0) throw error(error_code::invalid_argument, "num_swap_blocks must be >= 0");
  if (options.num_swap_blocks > 0) {
    swap_ = std::make_unique<kv_memory>(config_.num_layers, options.num_swap_blocks, options.block_size,
                                        config_.kv_dim(), options.kv_dtype);
  }

  rope_ = make_rope_table(config_);
}

cpu_backend::~cpu_backend() = default;

kv_cache_shape cpu_backend::kv_shape() const {
  return {kv_->num_blocks(), kv_->block_size(), kv_->bytes_per_block(), kv_->dtype()};
}

void cpu_backend::copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  for (const auto& [src, dst] : pairs) {
    if (src < 0 || dst < 0 || src >= kv_->num_blocks() || dst >= kv_->num_blocks()) {
      throw error(error_code::invalid_argument, "copy_blocks: block id out of range");
    }
  }
  for (const auto& [src, dst] : pairs) kv_->copy_block(src, dst);
}

namespace {
void check_moves(const std::vector<std::pair<int32_t, int32_t>>& moves, int32_t num_from, int32_t num_to,
                 const char* what) {
  for (const auto& [from, to] : moves) {
    if (from < 0 || to < 0 || from >= num_from || to >= num_to) {
      throw error(error_code::invalid_argument, std::string(what) + ": block id out of range");
    }
  }
}
}  // namespace

void cpu_backend::swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) {
  check_moves(device_to_host, kv_->num_blocks(), num_swap_blocks(), "swap_out");
  for (const auto& [device, host] : device_to_host) kv_->copy_block_to(*swap_, device, host);
}

void cpu_backend::swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) {
  check_moves(host_to_device, num_swap_blocks(), kv_->num_blocks(), "swap_in");
  for (const auto& [host, device] : host_to_device) swap_->copy_block_to(*kv_, host, device);
}

int64_t cpu_backend::packed_weight_bytes() const {
  size_t total = output_.num_bytes();
  for (const auto& l : layers_)
    for (const auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) total += m->num_bytes();
  return static_cast<int64_t>(total);
}

void cpu_backend::validate(const batch_plan& plan) const {
  check_plan(plan, config_, kv_->block_size(), kv_->num_blocks());
}

void cpu_backend::embed(const batch_plan& plan, float* x) const {
  const int64_t d = config_.embedding_dim;
  const auto row_bytes = troupe::row_bytes(token_embd_->type, d).value();
  int64_t row = 0;
  for (const auto& s : plan.sequences) {
    for (int32_t t : s.tokens) {
      dequantize_row(token_embd_->type, token_embd_->data + (uint64_t)t * row_bytes, x + row * d, d);
      ++row;
    }
  }
}

step_result cpu_backend::step(const batch_plan& plan) {
  validate(plan);
  auto& w = *ws_;
  const auto& c = config_;
  const int64_t n = plan.num_tokens();
  const int64_t d = c.embedding_dim, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.ffn_dim;
  w.x.resize(n * d);
  w.xn.resize(n * d);
  w.q.resize(n * qd);
  w.k.resize(n * kvd);
  w.v.resize(n * kvd);
  w.attn.resize(n * qd);
  w.tmp.resize(n * d);
  w.gate.resize(n * ff);
  w.up.resize(n * ff);
  w.positions.resize(n);
  w.attn_seqs.clear();
  w.logit_rows.clear();

  std::vector<const int32_t*> row_blocks(n);
  int64_t row = 0;
  for (const auto& s : plan.sequences) {
    w.attn_seqs.push_back({(int32_t)row, (int32_t)s.tokens.size(), s.start_pos, s.block_table.data()});
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      w.positions[row] = s.start_pos + (int32_t)i;
      row_blocks[row] = s.block_table.data();
      // A sample needs the last position's logits; verifying proposals, those of the
      // proposals' positions and the one before them too.
      const bool is_sampled = s.wants_sample && i + 1 + static_cast<size_t>(s.num_draft_tokens) >= s.tokens.size();
      if (s.wants_all_logits || is_sampled) w.logit_rows.push_back(row);
      ++row;
    }
  }

  embed(plan, w.x.data());
  const int32_t half = c.rope_dim / 2;
  const int32_t bs = kv_->block_size();
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const auto& lw = layers_[l];
    for_rows(pool_, n, [&](int64_t i) { rms_norm_row(&w.x[i * d], lw.attn_norm, &w.xn[i * d], d, c.rms_eps); });
    matmul_shared_input({&lw.wq, &lw.wk, &lw.wv}, w.xn.data(), n, {w.q.data(), w.k.data(), w.v.data()}, pool_);
    for_rows(pool_, n, [&](int64_t i) {
      float* q = &w.q[i * qd];
      float* k = &w.k[i * kvd];
      if (c.has_qkv_bias) {
        add_row(q, lw.q_bias, qd);
        add_row(k, lw.k_bias, kvd);
        add_row(&w.v[i * kvd], lw.v_bias, kvd);
      }
      if (c.has_qk_norm) {
        const int32_t hd = c.head_dim;
        for (int32_t h = 0; h < c.num_heads; ++h) rms_norm_row(q + h * hd, lw.q_norm, q + h * hd, hd, c.rms_eps);
        for (int32_t h = 0; h < c.num_kv_heads; ++h) rms_norm_row(k + h * hd, lw.k_norm, k + h * hd, hd, c.rms_eps);
      }
      const int32_t pos = w.positions[i];
      const float* cs = &rope_.cos[(size_t)pos * half];
      const float* sn = &rope_.sin[(size_t)pos * half];
      rope_row(q, c.num_heads, c.head_dim, c.rope_dim, c.rope, cs, sn);
      rope_row(k, c.num_kv_heads, c.head_dim, c.rope_dim, c.rope, cs, sn);
      if (key_rotation_ > 0) {
        rotate_hadamard(q, qd, key_rotation_);
        rotate_hadamard(k, kvd, key_rotation_);
      }
      if (value_rotation_ > 0) rotate_hadamard(&w.v[i * kvd], kvd, value_rotation_);
      const int32_t block = row_blocks[i][pos / bs];
      kv_->store_key(l, block, pos % bs, &w.k[i * kvd]);
      kv_->store_value(l, block, pos % bs, &w.v[i * kvd]);
    });
    paged_attention(*kv_, l, c, w.attn_seqs, w.q.data(), w.attn.data(), pool_);
    if (value_rotation_ > 0) {
      for_rows(pool_, n, [&](int64_t i) { rotate_hadamard(&w.attn[i * qd], qd, value_rotation_); });
    }
    matmul(lw.wo, w.attn.data(), n, w.tmp.data(), pool_);
    for_rows(pool_, n, [&](int64_t i) {
      add_row(&w.x[i * d], &w.tmp[i * d], d);
      rms_norm_row(&w.x[i * d], lw.ffn_norm, &w.xn[i * d], d, c.rms_eps);
    });
    matmul_shared_input({&lw.w_gate, &lw.w_up}, w.xn.data(), n, {w.gate.data(), w.up.data()}, pool_);
    for_rows(pool_, n, [&](int64_t i) { silu_mul_row(&w.gate[i * ff], &w.up[i * ff], ff); });
    matmul(lw.w_down, w.gate.data(), n, w.tmp.data(), pool_);
    for_rows(pool_, n, [&](int64_t i) { add_row(&w.x[i * d], &w.tmp[i * d], d); });
  }

  const int64_t num_logit_rows = (int64_t)w.logit_rows.size();
  const int64_t vocab = c.vocab_size;
  w.hidden.resize(num_logit_rows * d);
  w.logits.resize(num_logit_rows * vocab);
  for_rows(pool_, num_logit_rows, [&](int64_t i) {
    rms_norm_row(&w.x[w.logit_rows[i] * d], output_norm_, &w.hidden[i * d], d, c.rms_eps);
  });
  if (num_logit_rows > 0) {
    const int64_t head_rows = output_.num_rows();
    if (head_rows == vocab) {
      matmul(output_, w.hidden.data(), num_logit_rows, w.logits.data(), pool_);
    } else {
      // A head over the first head_rows ids: the rest of each row can never be drawn.
      w.head.resize(num_logit_rows * head_rows);
      matmul(output_, w.hidden.data(), num_logit_rows, w.head.data(), pool_);
      for (int64_t i = 0; i < num_logit_rows; ++i) {
        float* out = &w.logits[i * vocab];
        std::copy_n(&w.head[i * head_rows], head_rows, out);
        std::fill(out + head_rows, out + vocab, -INFINITY);
      }
    }
  }

  step_result result;
  result.outputs.resize(plan.sequences.size());
  std::vector<int64_t> sample_row(plan.sequences.size(), -1);
  int64_t logit_row = 0;
  for (size_t si = 0; si < plan.sequences.size(); ++si) {
    const auto& s = plan.sequences[si];
    auto& out = result.outputs[si];
    out.seq_id = s.seq_id;
    const int64_t num_sampled = s.wants_sample ? s.num_draft_tokens + 1 : 0;
    const int64_t rows = s.wants_all_logits ? (int64_t)s.tokens.size() : num_sampled;
    if (s.wants_all_logits) {
      out.logits.assign(w.logits.begin() + logit_row * vocab, w.logits.begin() + (logit_row + rows) * vocab);
    }
    if (s.wants_sample) sample_row[si] = logit_row + rows - num_sampled;
    logit_row += rows;
  }
  std::atomic<size_t> next{0};
  auto sample_one = [&](size_t si) {
    if (sample_row[si] < 0) return;
    const auto& s = plan.sequences[si];
    if (s.num_draft_tokens > 0) {
      thread_local std::vector<int32_t> window;
      const auto num_values = static_cast<size_t>(s.num_draft_tokens + 1) * static_cast<size_t>(vocab);
      verify_drafts(sampler_, std::span<float>(&w.logits[sample_row[si] * vocab], num_values), s,
                    result.outputs[si], window);
      return;
    }
    auto r = sampler_.sample(std::span<float>(&w.logits[sample_row[si] * vocab], vocab), s.params, s.penalty_tokens,
                             s.num_prompt_penalty_tokens, s.sample_index, s.allowed_tokens);
    auto& out = result.outputs[si];
    out.token = r.token;
    out.logprob = r.logprob;
    out.top_logprobs = std::move(r.top_logprobs);
  };
  if (plan.sequences.size() < 2) {
    for (size_t si = 0; si < plan.sequences.size(); ++si) sample_one(si);
  } else {
    pool_.run([&](int, int) {
      for (size_t si = next.fetch_add(1); si < plan.sequences.size(); si = next.fetch_add(1)) sample_one(si);
    });
  }
  return result;
}

}  // namespace troupe::cpu

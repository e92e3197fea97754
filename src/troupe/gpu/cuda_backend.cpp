// The CUDA backend: one object per device (per tensor-parallel rank). Weights stay in their
// GGUF (quantized) form on the device; decode-sized steps multiply them with the fused
// dequantize-GEMV, larger steps dequantize each matrix to fp16 and call cuBLAS. KV lives in
// a block-major pool sized from gpu_memory_utilization; swaps go to pinned host memory on
// the copy stream, ordered by step_order's events. Sampling runs on the device.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>

#include "troupe/gpu/cuda_internal.hpp"
#include "troupe/gpu/decode_graphs.hpp"
#include "troupe/gpu/kv_pool_sizing.hpp"
#include "troupe/gpu/model_support.hpp"
#include "troupe/gpu/tensor_shard.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/rope_table.hpp"
#include "troupe/gpu/step_profile.hpp"

namespace troupe::gpu {

namespace {

// Logit rows computed (and sampled) per pass of the output head: bounds the logits buffers.
constexpr int32_t logit_chunk_rows = 256;

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw error(error_code::internal, std::string("cuBLAS: ") + what + ": status " + std::to_string((int)s));
  }
}

// An integer from the environment within [lo, hi], else the fallback.
int32_t env_int(const char* name, int32_t fallback, int32_t lo, int32_t hi) {
  const char* v = std::getenv(name);
  if (v == nullptr) return fallback;
  const long n = std::strtol(v, nullptr, 10);
  return n >= lo && n <= hi ? (int32_t)n : fallback;
}

int64_t free_device_bytes(int64_t* total = nullptr) {
  size_t free_bytes = 0, total_bytes = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "query device memory");
  if (total) *total = (int64_t)total_bytes;
  return (int64_t)free_bytes;
}

class cuda_backend final : public backend {
 public:
  cuda_backend(std::shared_ptr<const gguf::file> file, const cuda_backend_options& options, int32_t rank,
               std::shared_ptr<nccl_group> nccl)
      : file_(std::move(file)),
        config_(model_config::from_gguf(*file_)),
        options_(options),
        device_(options.devices.empty() ? 0 : options.devices[(size_t)rank]),
        rank_(rank),
        num_ranks_(options.devices.empty() ? 1 : (int32_t)options.devices.size()),
        nccl_(std::move(nccl)),
        dims_(rank_dims_of(config_, num_ranks_)) {
    if (options.block_size < 1 || options.block_size > 1024) {
      throw error(error_code::invalid_argument, "block_size must be in [1, 1024]");
    }
    if (options.max_num_batched_tokens < 1) {
      throw error(error_code::invalid_argument, "max_num_batched_tokens must be >= 1");
    }
    check_cuda_supports(config_);
    for (int32_t id : options.eog_ids) {
      if (id < 0 || id >= config_.vocab_size) throw error(error_code::invalid_argument, "eog id out of range");
    }
    check_cuda(cudaSetDevice(device_), "select device");
    streams_ = std::make_unique<cuda_streams>();
    order_ = std::make_unique<step_order>(*streams_);
    check_cublas(cublasCreate(&cublas_), "create handle");
    check_cublas(cublasSetStream(cublas_, streams_->compute()), "set stream");

    const int64_t free_before_weights = free_device_bytes();
    try {
      weights_ = upload_weights(*file_, config_, rank_, num_ranks_);
    } catch (const error& e) {
      if (e.code() != error_code::context_overflow) throw;
      throw error(error_code::context_overflow,
                  std::string(e.what()) + " while loading the weights (" + std::to_string(free_before_weights >> 20) +
                      " MiB were free): use --tensor-parallel to split the model over more devices");
    }

    keep_fp16_copies();

    const auto rope = make_rope_table(config_);
    rope_cos_ = device_buffer(rope.cos.size() * sizeof(float), "RoPE table");
    rope_sin_ = device_buffer(rope.sin.size() * sizeof(float), "RoPE table");
    check_cuda(cudaMemcpy(rope_cos_.as<float>(), rope.cos.data(), rope_cos_.bytes(), cudaMemcpyHostToDevice), "RoPE");
    check_cuda(cudaMemcpy(rope_sin_.as<float>(), rope.sin.data(), rope_sin_.bytes(), cudaMemcpyHostToDevice), "RoPE");
    eog_.upload(options.eog_ids, streams_->compute());

    // The workspace is allocated once at its peak size; the drop in free memory is the
    // measured activation peak that the KV sizing subtracts.
    const int64_t free_before_workspace = free_device_bytes();
    allocate_workspace();
    free_after_workspace_ = free_device_bytes(&total_bytes_);
    activation_peak_bytes_ = free_before_workspace - free_after_workspace_;
  }

  ~cuda_backend() override {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    drop_graphs();
    if (cublas_) cublasDestroy(cublas_);
  }

  // The KV blocks this device could hold (before allocate_kv).
  int32_t measure_kv_blocks() const {
    kv_pool_request r;
    r.total_bytes = total_bytes_;
    r.free_bytes = free_after_workspace_;
    r.weight_bytes = weights_.bytes;
    r.activation_peak_bytes = activation_peak_bytes_;
    r.gpu_memory_utilization = options_.gpu_memory_utilization;
    r.bytes_per_block = rank_layout().block_bytes();
    r.min_blocks = blocks_per_sequence();
    r.max_blocks = options_.num_blocks;
    return size_kv_pool(r).num_blocks;
  }

  void allocate_kv(int32_t num_blocks) {
    check_cuda(cudaSetDevice(device_), "select device");
    layout_ = rank_layout();
    num_blocks_ = num_blocks;
    pool_ = device_buffer((size_t)(layout_.block_bytes() * num_blocks), "the KV cache");
    if (options_.num_swap_blocks < 0) throw error(error_code::invalid_argument, "num_swap_blocks must be >= 0");
    swap_ = std::make_unique<pinned_buffer>((size_t)(layout_.block_bytes() * options_.num_swap_blocks));
    streams_->bind(pool_.as<uint16_t>(), swap_->as<uint16_t>(), layout_.block_elements());
  }

  const model_config& config() const override { return config_; }

  kv_cache_shape kv_shape() const override {
    // bytes_per_block over the whole model, as the CPU backend reports it.
    return {num_blocks_, options_.block_size, layout_.block_bytes() * num_ranks_};
  }

  int32_t num_swap_blocks() const override { return options_.num_swap_blocks; }

  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override {
    check_moves(pairs, num_blocks_, num_blocks_, "copy_blocks");
    check_cuda(cudaSetDevice(device_), "select device");
    order_->copy_blocks(pairs);
  }

  void swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) override {
    check_moves(device_to_host, num_blocks_, options_.num_swap_blocks, "swap_out");
    check_cuda(cudaSetDevice(device_), "select device");
    order_->swap_out(device_to_host);
  }

  void swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) override {
    check_moves(host_to_device, options_.num_swap_blocks, num_blocks_, "swap_in");
    check_cuda(cudaSetDevice(device_), "select device");
    order_->swap_in(host_to_device);
  }

  step_result step(const batch_plan& plan) override {
    const device_plan flat = flatten_plan(plan, config_, options_.block_size, num_blocks_);
    const int32_t n = (int32_t)flat.num_rows();
    if (n > options_.max_num_batched_tokens) {
      throw error(error_code::invalid_argument, "a step of " + std::to_string(n) +
                                                    " tokens exceeds max_num_batched_tokens (" +
                                                    std::to_string(options_.max_num_batched_tokens) + ")");
    }
    if (n == 0) return assemble_result(plan, flat, {}, {}, config_.vocab_size);
    const auto wall_start = std::chrono::steady_clock::now();
    check_cuda(cudaSetDevice(device_), "select device");
    const cudaStream_t s = streams_->compute();
    order_->before_compute();
    inputs in{};
    head_inputs head{};
    profile_.timed(kernel_family::upload, s, [&] {
      in = inputs{tokens_.upload(flat.tokens, s), positions_.upload(flat.positions, s),
                  row_table_.upload(flat.row_table, s), block_tables_.upload(flat.block_tables, s)};
      head = upload_head_inputs(flat);
    });
    std::vector<float> all_logits;
    std::vector<device_sample_out> sampled(flat.samples.size());
    const auto graph = graphs_.decide(plan, {in.tokens, in.positions, in.row_table, in.block_tables, head.logit_rows,
                                             head.sample.samples, head.sample.penalty_tokens, head.sample.bias_tokens,
                                             head.sample.bias_values, head.sample.stop_tokens});
    if (graph.drop_all) drop_graphs();
    if (graph.what == decode_graph_policy::action::eager) {
      forward_layers(in, n);
      const bool wants_all = std::any_of(plan.sequences.begin(), plan.sequences.end(),
                                         [](const sequence_step& q) { return q.wants_all_logits; });
      output_head(flat, head, wants_all, sampled, all_logits);
    } else {
      // A decode step: one logit row and one sample per row, all in one chunk.
      if (graph.what == decode_graph_policy::action::capture) {
        try {
          capture(n, in, head);
        } catch (...) {
          graphs_.disable();  // run every later step eagerly
          drop_graphs();
          throw;
        }
      }
      profile_.timed(kernel_family::graph, s,
                     [&] { check_cuda(cudaGraphLaunch(graph_execs_.at(n), s), "launch a decode graph"); });
      profile_.timed(kernel_family::copy_back, s, [&] { copy_samples_back(sampled, 0, n); });
    }
    order_->after_compute();
    check_cuda(cudaStreamSynchronize(s), "run the step");
    if (profile_.on()) {
      profile_.end_step(n, decode_graph_policy::is_decode_step(plan),
                        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - wall_start).count());
    }
    return assemble_result(plan, flat, sampled, all_logits, config_.vocab_size);
  }

 private:
  struct inputs {
    const int32_t* tokens;
    const int32_t* positions;
    const int32_t* row_table;
    const int32_t* block_tables;
  };
  struct head_inputs {
    const int32_t* logit_rows;
    kernels::sample_inputs sample;  // samples points at all of the step's samples
  };

  // The pool layout for this rank's KV heads.
  kv_layout rank_layout() const {
    return {config_.num_layers, options_.block_size, dims_.num_kv_heads * config_.head_dim};
  }

  static void check_moves(const std::vector<std::pair<int32_t, int32_t>>& moves, int32_t num_from, int32_t num_to,
                          const char* what) {
    for (const auto& [from, to] : moves) {
      if (from < 0 || to < 0 || from >= num_from || to >= num_to) {
        throw error(error_code::invalid_argument, std::string(what) + ": block id out of range");
      }
    }
  }

  // KV blocks one sequence of the longest allowed length holds.
  int32_t blocks_per_sequence() const {
    const int32_t max_len = options_.max_model_len > 0 ? std::min(options_.max_model_len, config_.context_length)
                                                       : config_.context_length;
    return (max_len + options_.block_size - 1) / options_.block_size;
  }

  int32_t q_dim() const { return dims_.num_heads * config_.head_dim; }
  int32_t kv_dim() const { return dims_.num_kv_heads * config_.head_dim; }

  void allocate_workspace() {
    const int64_t t = options_.max_num_batched_tokens;
    const int64_t d = config_.embedding_dim, ff = dims_.ffn_dim, vocab = config_.vocab_size;
    const auto floats = [](int64_t count) { return device_buffer((size_t)count * sizeof(float), "the step workspace"); };
    x_ = floats(t * d);
    xn_ = floats(t * d);
    q_ = floats(t * q_dim());
    k_ = floats(t * kv_dim());
    v_ = floats(t * kv_dim());
    attn_ = floats(t * q_dim());
    tmp_ = floats(t * d);
    gate_ = floats(t * ff);
    up_ = floats(t * ff);
    hidden_ = floats((int64_t)logit_chunk_rows * d);
    logits_ = floats((int64_t)logit_chunk_rows * vocab);
    work_ = floats((int64_t)logit_chunk_rows * vocab);
    const int64_t widest = std::max<int64_t>({d, ff, q_dim()});
    // cuBLAS must not allocate while a decode graph is being captured: give it its own.
    cublas_workspace_ = device_buffer(32u << 20, "the cuBLAS workspace");
    check_cublas(cublasSetWorkspace(cublas_, cublas_workspace_.as<void>(), cublas_workspace_.bytes()), "set workspace");
    x_half_ = device_buffer((size_t)(std::max<int64_t>(t, logit_chunk_rows) * widest * 2), "the step workspace");
    // With fp16 copies of every matrix the scratch is never written.
    w_half_ = device_buffer(fp16_copy_bytes_ > 0 ? (size_t)256 : (size_t)(weights_.largest_matrix_elements * 2),
                            "the fp16 weight scratch");
    sample_out_.reserve(logit_chunk_rows);
    tokens_.reserve((size_t)t);
    positions_.reserve((size_t)t);
    row_table_.reserve((size_t)t);
    // Inputs a decode graph captures by address are sized up front for a full batch of
    // long sequences, so growing sequences do not move them (which drops every graph).
    block_tables_.reserve((size_t)std::min<int64_t>((int64_t)logit_chunk_rows * blocks_per_sequence(), 1 << 22));
    penalty_tokens_.reserve((size_t)logit_chunk_rows * 256);
    logit_rows_.reserve((size_t)std::max<int64_t>(t, logit_chunk_rows));
    samples_.reserve((size_t)logit_chunk_rows);
  }

  // y = x W^T for num_tokens rows of x.
  void matmul(const device_matrix& w, const float* x, int32_t num_tokens, float* y) {
    const cudaStream_t s = streams_->compute();
    if (num_tokens <= gemv_max_tokens_) {  // 8 tokens per pass; a matrix re-read from L2 by the next pass
      profile_.timed(kernel_family::gemv, s, [&] {
        for (int32_t t = 0; t < num_tokens; t += kernels::max_gemv_tokens) {
          kernels::gemv(w, x + (int64_t)t * w.cols, std::min(kernels::max_gemv_tokens, num_tokens - t),
                        y + (int64_t)t * w.rows, s);
        }
      });
      return;
    }
    profile_.timed(kernel_family::dequant, s, [&] {
      if (!w.half) kernels::dequantize_to_half(w, w_half_.as<uint16_t>(), s);
      kernels::to_half(x, x_half_.as<uint16_t>(), (int64_t)num_tokens * w.cols, s);
    });
    profile_.timed(kernel_family::gemm, s, [&] { gemm_half(w, w.half ? w.half : w_half_.as<uint16_t>(), num_tokens, y); });
  }

  // Every matrix's fp16 copy, made once here, when all of them fit in the share of device
  // memory that fp16_weight_share allows (all or none: the GEMM path is then uniform).
  void keep_fp16_copies() {
    std::vector<device_matrix*> all{&weights_.output};
    for (auto& l : weights_.layers) {
      for (auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) all.push_back(m);
    }
    int64_t bytes = 0;
    for (const auto* m : all) bytes += m->rows * m->cols * 2;
    int64_t total = 0;
    const int64_t free_now = free_device_bytes(&total);
    if (options_.fp16_weight_share <= 0.0 || (double)bytes > options_.fp16_weight_share * (double)total ||
        bytes > free_now / 2) {
      return;
    }
    const cudaStream_t s = streams_->compute();
    for (auto* m : all) {
      weights_.buffers.emplace_back((size_t)(m->rows * m->cols * 2), "the fp16 weight copies");
      auto* half = weights_.buffers.back().as<uint16_t>();
      kernels::dequantize_to_half(*m, half, s);
      m->half = half;
    }
    check_cuda(cudaStreamSynchronize(s), "make the fp16 weight copies");
    weights_.bytes += bytes;
    fp16_copy_bytes_ = bytes;
  }

  // y = x W^T from fp16 copies of W and x.
  void gemm_half(const device_matrix& w, const uint16_t* w_half, int32_t num_tokens, float* y) {
    const float alpha = 1.0f, beta = 0.0f;
    // Row-major y (tokens x rows) is column-major (rows x tokens) = W (cols x rows)^T X.
    check_cublas(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, (int)w.rows, num_tokens, (int)w.cols, &alpha,
                              w_half, CUDA_R_16F, (int)w.cols, x_half_.as<void>(), CUDA_R_16F,
                              (int)w.cols, &beta, y, CUDA_R_32F, (int)w.rows, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "GEMM");
  }

  void all_reduce(float* data, int64_t count) {
    if (num_ranks_ > 1) nccl_->all_reduce_sum(rank_, data, (size_t)count, streams_->compute());
  }

  void forward_layers(const inputs& in, int32_t n) {
    const auto& c = config_;
    const cudaStream_t s = streams_->compute();
    const int32_t d = c.embedding_dim, ff = dims_.ffn_dim;
    float *x = x_.as<float>(), *xn = xn_.as<float>(), *q = q_.as<float>(), *k = k_.as<float>(), *v = v_.as<float>();
    float *attn = attn_.as<float>(), *tmp = tmp_.as<float>(), *gate = gate_.as<float>(), *up = up_.as<float>();
    profile_.timed(kernel_family::embed, s, [&] { kernels::embed(weights_.token_embd, in.tokens, n, x, s); });
    const kernels::rope_args rope{dims_.num_heads, dims_.num_kv_heads, c.head_dim, c.rope_dim, c.rope,
                                  rope_cos_.as<float>(), rope_sin_.as<float>()};
    uint16_t* pool = pool_.as<uint16_t>();
    for (int32_t l = 0; l < c.num_layers; ++l) {
      const auto& lw = weights_.layers[(size_t)l];
      if (l == 0) {
        profile_.timed(kernel_family::norm, s, [&] { kernels::rms_norm(x, nullptr, n, lw.attn_norm, xn, d, c.rms_eps, s); });
      }
      matmul(lw.wq, xn, n, q);
      matmul(lw.wk, xn, n, k);
      matmul(lw.wv, xn, n, v);
      profile_.timed(kernel_family::rope_kv, s, [&] {
        kernels::rope_store_kv(q, k, v, in.positions, in.row_table, in.block_tables, n, rope, pool, layout_, l, s);
      });
      profile_.timed(kernel_family::attention, s, [&] {
        kernels::attention(q, in.positions, in.row_table, in.block_tables, n, dims_.num_heads, dims_.num_kv_heads,
                           c.head_dim, pool, layout_, l, attn, s);
      });
      matmul(lw.wo, attn, n, tmp);
      all_reduce(tmp, (int64_t)n * d);
      profile_.timed(kernel_family::norm, s, [&] { kernels::add_rms_norm(x, tmp, lw.ffn_norm, xn, n, d, c.rms_eps, s); });
      matmul(lw.w_gate, xn, n, gate);
      matmul(lw.w_up, xn, n, up);
      profile_.timed(kernel_family::elementwise, s, [&] { kernels::silu_mul(gate, up, (int64_t)n * ff, s); });
      matmul(lw.w_down, gate, n, tmp);
      all_reduce(tmp, (int64_t)n * d);
      // The residual add fused with the next layer's attention norm.
      profile_.timed(kernel_family::norm, s, [&] {
        if (l + 1 < c.num_layers) {
          kernels::add_rms_norm(x, tmp, weights_.layers[(size_t)l + 1].attn_norm, xn, n, d, c.rms_eps, s);
        } else {
          kernels::add(x, tmp, (int64_t)n * d, s);
        }
      });
    }
  }

  head_inputs upload_head_inputs(const device_plan& flat) {
    const cudaStream_t s = streams_->compute();
    head_inputs h;
    h.logit_rows = logit_rows_.upload(flat.logit_rows, s);
    auto& in = h.sample;
    in.samples = samples_.upload(flat.samples, s);
    in.num_samples = (int32_t)flat.samples.size();
    in.work = work_.as<float>();
    in.penalty_tokens = penalty_tokens_.upload(flat.penalty_tokens, s);
    in.bias_tokens = bias_tokens_.upload(flat.bias_tokens, s);
    in.bias_values = bias_values_.upload(flat.bias_values, s);
    in.stop_tokens = stop_tokens_.upload(flat.stop_tokens, s);
    in.eog_ids = eog_.data();
    in.num_eog = (int32_t)options_.eog_ids.size();
    in.vocab_size = config_.vocab_size;
    in.logits = logits_.as<float>();
    return h;
  }

  // Device work only (capturable): logits of logit rows [first, first + rows) and the
  // samples [s0, s1) that read them.
  void head_chunk(const head_inputs& h, int32_t first, int32_t rows, int32_t s0, int32_t s1) {
    const cudaStream_t s = streams_->compute();
    profile_.timed(kernel_family::norm, s, [&] {
      kernels::rms_norm(x_.as<float>(), h.logit_rows + first, rows, weights_.output_norm, hidden_.as<float>(),
                        config_.embedding_dim, config_.rms_eps, s);
    });
    profile_.timed(kernel_family::head, s, [&] { matmul(weights_.output, hidden_.as<float>(), rows, logits_.as<float>()); });
    if (s1 == s0) return;
    auto in = h.sample;
    in.first_index = first;
    in.samples += s0;
    in.num_samples = s1 - s0;
    profile_.timed(kernel_family::sample, s, [&] { kernels::sample(in, sample_out_.data(), s); });
  }

  void copy_samples_back(std::vector<device_sample_out>& sampled, int32_t s0, int32_t s1) {
    if (s1 == s0) return;
    check_cuda(cudaMemcpyAsync(sampled.data() + s0, sample_out_.data(), (size_t)(s1 - s0) * sizeof(device_sample_out),
                               cudaMemcpyDeviceToHost, streams_->compute()),
               "copy samples back");
  }

  // Final norm, output head and sampling over the logit rows, logit_chunk_rows at a time.
  // wants_all: some sequence asked for every logit row, so all of them come back (the
  // result is assembled from them in logit-row order).
  void output_head(const device_plan& flat, const head_inputs& head, bool wants_all,
                   std::vector<device_sample_out>& sampled, std::vector<float>& all_logits) {
    const cudaStream_t s = streams_->compute();
    const int32_t num_logit_rows = (int32_t)flat.logit_rows.size();
    const int64_t vocab = config_.vocab_size;
    if (wants_all) all_logits.resize((size_t)num_logit_rows * vocab);
    int32_t next_sample = 0;
    for (int32_t first = 0; first < num_logit_rows; first += logit_chunk_rows) {
      const int32_t rows = std::min(logit_chunk_rows, num_logit_rows - first);
      int32_t end_sample = next_sample;
      while (end_sample < (int32_t)flat.samples.size() && flat.samples[(size_t)end_sample].logit_index < first + rows) {
        ++end_sample;
      }
      head_chunk(head, first, rows, next_sample, end_sample);
      // Pageable destinations: each copy returns once done, so the next chunk may reuse
      // the logits and sample buffers.
      profile_.timed(kernel_family::copy_back, s, [&] {
        if (wants_all) {
          check_cuda(cudaMemcpyAsync(all_logits.data() + (int64_t)first * vocab, logits_.as<float>(),
                                     (size_t)rows * vocab * sizeof(float), cudaMemcpyDeviceToHost, s),
                     "copy logits back");
        }
        copy_samples_back(sampled, next_sample, end_sample);
      });
      next_sample = end_sample;
    }
  }

  // Records a decode step of n rows (n logit rows, n samples) as a graph for its batch size.
  void capture(int32_t n, const inputs& in, const head_inputs& head) {
    const cudaStream_t s = streams_->compute();
    check_cuda(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "begin graph capture");
    cudaGraph_t graph = nullptr;
    profile_.set_capturing(true);
    try {
      forward_layers(in, n);
      head_chunk(head, 0, n, 0, n);
      profile_.set_capturing(false);
    } catch (...) {
      profile_.set_capturing(false);
      cudaStreamEndCapture(s, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    check_cuda(cudaStreamEndCapture(s, &graph), "end graph capture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check_cuda(e, "instantiate a decode graph");
    graph_execs_[n] = exec;
  }

  void drop_graphs() {
    for (auto& [batch, exec] : graph_execs_) cudaGraphExecDestroy(exec);
    graph_execs_.clear();
  }

  std::shared_ptr<const gguf::file> file_;
  model_config config_;
  cuda_backend_options options_;
  int device_;
  int32_t rank_, num_ranks_;
  std::shared_ptr<nccl_group> nccl_;
  rank_dims dims_;
  std::unique_ptr<cuda_streams> streams_;
  std::unique_ptr<step_order> order_;
  cublasHandle_t cublas_ = nullptr;
  weights_on_device weights_;
  device_buffer rope_cos_, rope_sin_;
  device_buffer x_, xn_, q_, k_, v_, attn_, tmp_, gate_, up_, hidden_, logits_, work_, x_half_, w_half_;
  device_array<int32_t> tokens_, positions_, row_table_, block_tables_, logit_rows_, penalty_tokens_, bias_tokens_,
      stop_tokens_, eog_;
  device_array<float> bias_values_;
  device_array<device_sample> samples_;
  device_array<device_sample_out> sample_out_;
  int64_t total_bytes_ = 0, free_after_workspace_ = 0, activation_peak_bytes_ = 0;
  kv_layout layout_;
  int32_t num_blocks_ = 0;
  device_buffer pool_;
  std::unique_ptr<pinned_buffer> swap_;
  decode_graph_policy graphs_{options_.cuda_graphs ? logit_chunk_rows : 0, 256};
  std::map<int32_t, cudaGraphExec_t> graph_execs_;
  step_profile profile_;
  int64_t fp16_copy_bytes_ = 0;
  // Steps of up to this many tokens use the GEMV (in passes of 8) rather than dequantizing
  // each matrix to fp16 for cuBLAS; TROUPE_CUDA_GEMV_MAX_TOKENS overrides it for tuning.
  // Measured on an H200 (docs/gpu.md): two passes of 8 lost to cuBLAS at 16 tokens.
  int32_t gemv_max_tokens_ = env_int("TROUPE_CUDA_GEMV_MAX_TOKENS", kernels::max_gemv_tokens,
                                     kernels::max_gemv_tokens, 4096);
  device_buffer cublas_workspace_;
};

}  // namespace

std::vector<std::shared_ptr<backend>> make_cuda_backends(std::shared_ptr<const gguf::file> file,
                                                         const cuda_backend_options& options) {
  const int available = num_cuda_devices();
  if (available == 0) {
    throw error(error_code::unsupported, "--device cuda: no CUDA device is visible (no driver, no GPU, or "
                                         "CUDA_VISIBLE_DEVICES hides them)");
  }
  auto opts = options;
  if (opts.devices.empty()) opts.devices = {0};
  for (int dev : opts.devices) {
    if (dev < 0 || dev >= available) {
      throw error(error_code::invalid_argument, "--devices: CUDA device " + std::to_string(dev) + " does not exist (" +
                                                    std::to_string(available) + " visible)");
    }
  }
  std::shared_ptr<nccl_group> nccl;
  if (opts.devices.size() > 1) nccl = std::make_shared<nccl_group>(opts.devices);
  std::vector<std::shared_ptr<cuda_backend>> ranks;
  for (int32_t r = 0; r < (int32_t)opts.devices.size(); ++r) {
    ranks.push_back(std::make_shared<cuda_backend>(file, opts, r, nccl));
  }
  // Block ids are shared by all ranks: every rank gets the smallest rank's pool.
  int32_t num_blocks = INT32_MAX;
  for (const auto& b : ranks) num_blocks = std::min(num_blocks, b->measure_kv_blocks());
  std::vector<std::shared_ptr<backend>> out;
  for (const auto& b : ranks) {
    b->allocate_kv(num_blocks);
    out.push_back(b);
  }
  return out;
}

std::shared_ptr<backend> make_cuda_backend(std::shared_ptr<const gguf::file> file, const cuda_backend_options& options) {
  if (options.devices.size() > 1) {
    throw error(error_code::invalid_argument, "make_cuda_backend takes one device; use make_cuda_backends for tensor "
                                              "parallelism");
  }
  return make_cuda_backends(std::move(file), options).front();
}

}  // namespace troupe::gpu

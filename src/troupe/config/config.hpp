// troupe::config: every knob of `troupe serve` in one struct, with its default, its
// command-line flag, its config-file key and its CAF option (docs/design.md, "Layers";
// every flag: docs/front-door.md, "Configuration").
// Names follow vLLM where vLLM has the knob.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>

#include "troupe/engine/scheduler_config.hpp"

namespace troupe {

struct config {
  // The model and where it runs.
  std::string model;                    // GGUF file
  std::string served_model_name;        // the `model` the API reports; "" = the file's name
  std::string device = "auto";          // auto | cpu | cuda
  std::string devices;                  // CUDA devices, "0,1"; "" = all visible
  int32_t tensor_parallel = 1;
  double gpu_memory_utilization = 0.9;  // share of free device memory for weights + KV
  bool cuda_graphs = true;
  std::string async_scheduling = "auto";  // auto | on | off (auto: on with CUDA, off on the CPU)
  std::string speculative = "off";      // off | ngram | draft: speculative decoding (requests may override)
  std::string draft_model;              // GGUF file of a draft model (same vocabulary); "" = none
  int64_t draft_vocab = 32768;          // the draft proposes only token ids below this (0 = all)
  int32_t threads = 0;                  // CPU compute threads; 0 = one per core
  int64_t stand_in_step_us = 0;         // benchmarks only: no forward pass, fixed-time steps; 0 = off

  // The KV cache.
  int32_t block_size = 16;
  int64_t kv_cache_bytes = 0;           // 0 = sized from the context (CPU) or memory (GPU)
  std::string kv_cache_dtype = "f16";   // f16 | q8_0 | q4_0 (quantized: CPU only)
  double swap_space = 0.0;              // GiB of host memory for preempted sequences (vLLM)
  bool enable_prefix_caching = true;

  // Scheduling and admission. max_model_len 0 (the default here) = the model's context.
  scheduler_config scheduling = [] {
    scheduler_config s;
    s.max_model_len = 0;
    return s;
  }();

  // The front door.
  std::string host = "127.0.0.1";
  int32_t port = 8080;                  // 0 = any free port
  std::string api_key;                  // "" = no authentication
  int32_t io_threads = 1;               // Asio threads for HTTP and WebSocket
  int64_t max_body_bytes = 1 << 20;     // HTTP request bodies and WebSocket messages
  int64_t max_buffered_bytes = 4 << 20; // bytes queued for one client before its connection
                                        // is closed (its requests cancelled)
  int64_t write_timeout_ms = 30000;     // one write the client does not take in this long
                                        // closes its connection
  int32_t max_connections = 4096;
  int64_t drain_timeout_ms = 30000;     // on SIGTERM: how long in-flight requests may finish

  // Throws troupe::error(invalid_argument) naming the flag at fault and what is allowed.
  void validate() const;
};

// Calls f(name, help, field&) for every option, in the order --help lists them. name is
// the config-file key; the flag is "--" + name with '_' as '-'. field is one of int32_t,
// int64_t, double, bool or std::string.
template <class Config, class F>
void for_each_option(Config& c, F&& f) {
  static_assert(std::is_same_v<std::remove_const_t<Config>, config>);
  f("model", "GGUF model file (required)", c.model);
  f("served_model_name", "model name the API reports (default: the file name without .gguf)", c.served_model_name);
  f("device", "auto | cpu | cuda (auto: CUDA when a device is present)", c.device);
  f("devices", "CUDA devices to use, e.g. 0,1 (default: all visible)", c.devices);
  f("tensor_parallel", "split each layer over this many CUDA devices", c.tensor_parallel);
  f("gpu_memory_utilization", "share of a device's free memory for weights and KV cache", c.gpu_memory_utilization);
  f("cuda_graphs", "replay steady decode batches as captured CUDA graphs", c.cuda_graphs);
  f("threads", "CPU compute threads (0 = one per core)", c.threads);
  f("stand_in_step_us", "BENCHMARKS ONLY: run no forward pass; every step takes this many microseconds and answers made-up tokens (0 = off)", c.stand_in_step_us);
  f("block_size", "KV cache positions per block", c.block_size);
  f("kv_cache_bytes", "KV cache size in bytes (0 = from the context or device memory)", c.kv_cache_bytes);
  f("kv_cache_dtype", "how K/V are stored: f16 | q8_0 | q4_0 (quantized: CPU only, ~1.9x / ~3.5x the tokens per byte)", c.kv_cache_dtype);
  f("swap_space", "GiB of host memory to swap preempted sequences to (0 = recompute)", c.swap_space);
  f("enable_prefix_caching", "reuse the KV of shared prompt prefixes", c.enable_prefix_caching);
  f("max_num_seqs", "sequences running at once", c.scheduling.max_num_seqs);
  f("max_num_batched_tokens", "tokens fed per step, all sequences together", c.scheduling.max_num_batched_tokens);
  f("max_model_len", "prompt + output tokens per sequence (0 = the model's context)", c.scheduling.max_model_len);
  f("enable_chunked_prefill", "split long prompts over several steps", c.scheduling.enable_chunked_prefill);
  f("async_scheduling", "plan step N+1 while step N runs: auto | on | off (auto: on with CUDA)", c.async_scheduling);
  f("steady_decodes", "plan decodes that stay inside their KV blocks as one lane, not one by one (the same steps, planned at the cost of what changed)", c.scheduling.steady_decodes);
  f("speculative", "speculative decoding: off | ngram (prompt lookup; exact) | draft (--draft-model); requests may override", c.speculative);
  f("draft_model", "GGUF draft model for --speculative draft (same vocabulary as --model; CPU only)", c.draft_model);
  f("draft_vocab", "the draft model's head covers token ids below this only (0 = all): cheaper draft steps, exact output", c.draft_vocab);
  f("draft_min_confidence", "a draft model stops proposing once its probability of its proposals so far is under this (0 = never)", c.scheduling.draft_min_confidence);
  f("num_speculative_tokens", "most tokens proposed per sequence per step (adapted per sequence)", c.scheduling.num_speculative_tokens);
  f("ngram_min", "shortest suffix n-gram prompt lookup matches", c.scheduling.ngram_min);
  f("ngram_max", "longest suffix n-gram prompt lookup matches", c.scheduling.ngram_max);
  f("speculative_max_batch", "propose only while at most this many sequences decode in a step", c.scheduling.speculative_max_batch);
  f("speculative_break_even", "a greedy sequence whose accepted proposals do not pay for their measured cost sits out 4 to 32 steps", c.scheduling.speculative_break_even);
  f("attention_cost", "attended positions costing one token's matmuls; deep prompt chunks shrink by it (-1 = measured, 0 = off)", c.scheduling.attention_cost);
  f("step_timeout_ms", "a step not back from the worker in this long (or 4x its predicted time, if longer) fails its requests and the worker is replaced (0 = never)", c.scheduling.step_timeout_ms);
  f("ageing_ms", "a waiting request gains one priority level per this many ms (0 = never)", c.scheduling.ageing_ms);
  f("max_batch_size", "admission: release new requests when this many wait", c.scheduling.max_batch_size);
  f("max_wait_ms", "admission: or when the oldest has waited this long (0 = at once)", c.scheduling.max_wait_ms);
  f("max_queue_len", "requests waiting before new ones are refused with 429", c.scheduling.max_queue_len);
  f("host", "address to listen on", c.host);
  f("port", "port to listen on (0 = any free port)", c.port);
  f("api_key", "require Authorization: Bearer KEY on /v1 routes and the WebSocket", c.api_key);
  f("io_threads", "threads serving HTTP and WebSocket connections", c.io_threads);
  f("max_body_bytes", "largest HTTP body or WebSocket message accepted", c.max_body_bytes);
  f("max_buffered_bytes", "bytes queued for one client before its connection is closed and its requests cancelled", c.max_buffered_bytes);
  f("write_timeout_ms", "a write the client does not take in this long closes its connection", c.write_timeout_ms);
  f("max_connections", "open connections at once", c.max_connections);
  f("drain_timeout_ms", "on SIGINT/SIGTERM, how long in-flight requests may finish", c.drain_timeout_ms);
}

}  // namespace troupe

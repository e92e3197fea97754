// config::validate: each knob against what the engine and the front door accept, with a
// message that names the flag.
#include "troupe/config/config.hpp"

#include "troupe/model/error.hpp"
#include "troupe/model/kv_cache_dtype.hpp"

namespace troupe {
namespace {

[[noreturn]] void reject(const char* flag, const std::string& rule, const std::string& got) {
  throw error(error_code::invalid_argument, std::string("--") + flag + " must be " + rule + ", got " + got);
}

void check_range(const char* flag, int64_t value, int64_t min, int64_t max) {
  if (value < min || value > max) {
    reject(flag, "in [" + std::to_string(min) + ", " + std::to_string(max) + "]", std::to_string(value));
  }
}

}  // namespace

void config::validate() const {
  if (model.empty()) throw error(error_code::invalid_argument, "--model is required (a GGUF file)");
  if (device != "auto" && device != "cpu" && device != "cuda") reject("device", "auto, cpu or cuda", device);
  if (async_scheduling != "auto" && async_scheduling != "on" && async_scheduling != "off") {
    reject("async-scheduling", "auto, on or off", async_scheduling);
  }
  if (speculative != "off" && speculative != "ngram" && speculative != "draft") {
    reject("speculative", "off, ngram or draft", speculative);
  }
  if (speculative == "draft" && draft_model.empty()) {
    reject("speculative", "off or ngram without --draft-model", speculative);
  }
  if (draft_vocab < 0) reject("draft-vocab", ">= 0 (0 = the whole vocabulary)", std::to_string(draft_vocab));
  check_range("tensor-parallel", tensor_parallel, 1, 64);
  if (!(gpu_memory_utilization > 0.0 && gpu_memory_utilization <= 1.0)) {
    reject("gpu-memory-utilization", "in (0, 1]", std::to_string(gpu_memory_utilization));
  }
  check_range("threads", threads, 0, 1024);
  check_range("stand-in-step-us", stand_in_step_us, 0, 10'000'000);
  if (stand_in_step_us > 0 && (speculative != "off" || !draft_model.empty())) {
    reject("stand-in-step-us", "0 with --speculative or --draft-model (the stand-in verifies no proposals)",
           std::to_string(stand_in_step_us));
  }
  if (block_size != 8 && block_size != 16 && block_size != 32 && block_size != 64 && block_size != 128) {
    reject("block-size", "8, 16, 32, 64 or 128", std::to_string(block_size));
  }
  if (kv_cache_bytes < 0) reject("kv-cache-bytes", ">= 0 (0 = automatic)", std::to_string(kv_cache_bytes));
  if (!parse_kv_cache_dtype(kv_cache_dtype)) {
    reject("kv-cache-dtype", std::string(kv_cache_dtype_choices), "'" + kv_cache_dtype + "'");
  }
  if (!(swap_space >= 0.0 && swap_space <= 1024.0)) reject("swap-space", "in [0, 1024] GiB", std::to_string(swap_space));
  if (scheduling.max_model_len < 0) {
    reject("max-model-len", ">= 0 (0 = the model's context)", std::to_string(scheduling.max_model_len));
  }
  try {
    // The model's context stands in for 0 once the model is loaded; any length passes here.
    scheduler_config s = scheduling;
    if (s.max_model_len == 0) s.max_model_len = s.enable_chunked_prefill ? 1 : s.max_num_batched_tokens;
    s.validate();
  } catch (const error& e) {
    // scheduler_config names its fields; the user typed flags.
    std::string message = e.what();
    for (char& ch : message) {
      if (ch == '_') ch = '-';
    }
    throw error(error_code::invalid_argument, "--" + message);
  }
  if (host.empty()) reject("host", "an address to listen on", "\"\"");
  check_range("port", port, 0, 65535);
  check_range("io-threads", io_threads, 1, 64);
  check_range("max-body-bytes", max_body_bytes, 1024, int64_t{1} << 30);
  check_range("max-buffered-bytes", max_buffered_bytes, 4096, int64_t{1} << 32);
  check_range("write-timeout-ms", write_timeout_ms, 100, int64_t{24} * 3600 * 1000);
  check_range("max-connections", max_connections, 1, 1000000);
  check_range("drain-timeout-ms", drain_timeout_ms, 0, 3600 * 1000);
}

}  // namespace troupe

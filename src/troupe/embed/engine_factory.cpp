#include "troupe/embed/engine_factory.hpp"

#include <algorithm>
#include <cstdio>

#include "troupe/embed/backend_select.hpp"
#include "troupe/embed/draft_model.hpp"
#include "troupe/embed/fault_injection.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/draft_backend.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/stand_in_backend.hpp"

namespace troupe {

namespace {

// --stand-in-step-us: the model's tokenizer and shape with a fixed-time step in place of the
// forward pass (model/stand_in_backend.hpp), over as many KV blocks as the real pool would
// have at --kv-cache-bytes (or enough for max_num_seqs full-length sequences).
backend_choice stand_in_choice(const config& c, const model_bundle& model, const backend_choice_options& o) {
  const auto& m = model.config;
  const int64_t bytes_per_block = kv_block_bytes(o.cpu.kv_dtype, m.num_layers, c.block_size, m.kv_dim());
  int64_t num_blocks = c.kv_cache_bytes > 0 ? c.kv_cache_bytes / std::max<int64_t>(bytes_per_block, 1) : 0;
  if (num_blocks <= 0) {
    const int64_t per_sequence = (model.max_model_len + c.block_size - 1) / c.block_size;
    num_blocks = std::max<int64_t>(per_sequence, int64_t{c.scheduling.max_num_seqs} * per_sequence);
  }
  num_blocks = std::min<int64_t>(num_blocks, 1 << 22);
  backend_choice choice;
  choice.ranks.push_back(std::make_shared<stand_in_backend>(m, static_cast<int32_t>(num_blocks), c.block_size,
                                                            std::chrono::microseconds(c.stand_in_step_us),
                                                            model.tok.eog_ids()));
  choice.description = "STAND-IN backend (no forward pass, " + std::to_string(c.stand_in_step_us) +
                       " us per step, made-up tokens)";
  return choice;
}

backend_choice make_backends(const config& c, std::shared_ptr<const gguf::file> file, const model_bundle& model,
                             std::shared_ptr<const gguf::file> draft_file) {
  backend_choice_options o;
  o.device = c.device;
  if (!c.devices.empty()) o.devices = parse_device_list(c.devices);
  o.tensor_parallel = c.tensor_parallel;
  o.gpu_memory_utilization = c.gpu_memory_utilization;
  o.cuda_graphs = c.cuda_graphs;
  o.max_num_batched_tokens = c.scheduling.max_num_batched_tokens;
  o.max_model_len = model.max_model_len;
  o.cpu.num_threads = c.threads;
  o.cpu.block_size = c.block_size;
  o.cpu.kv_cache_bytes = c.kv_cache_bytes;
  o.cpu.kv_dtype = parse_kv_cache_dtype(c.kv_cache_dtype).value();  // validate() refused anything else
  o.cpu.eog_ids = model.tok.eog_ids();
  if (c.swap_space > 0) {
    // K and V of every layer in the pool's dtype, as a KV block is laid out on either backend.
    const auto& m = model.config;
    const double bytes_per_block = (double)kv_block_bytes(o.cpu.kv_dtype, m.num_layers, c.block_size, m.kv_dim());
    o.cpu.num_swap_blocks = static_cast<int32_t>(c.swap_space * double(1ull << 30) / bytes_per_block);
    o.num_swap_blocks = o.cpu.num_swap_blocks;
  }
  if (c.stand_in_step_us > 0) return stand_in_choice(c, model, o);
  if (!draft_file) return choose_backend(std::move(file), o);
  // The draft runs on the CPU beside the target, over one pool of block ids that both
  // models' KV fits in (model/draft_backend.hpp).
  if (c.device == "cuda") throw error(error_code::unsupported, "--draft-model runs on the CPU only (use --device cpu)");
  o.device = "cpu";
  size_pool_for_draft(o.cpu, model.config, model_config::from_gguf(*draft_file), c.kv_cache_bytes,
                      c.swap_space * double(1ull << 30));
  o.num_swap_blocks = o.cpu.num_swap_blocks;
  auto choice = choose_backend(std::move(file), o);
  choice.ranks.front() = with_draft_model(choice.ranks.front(), std::move(draft_file), o.cpu, c.draft_vocab,
                                          c.scheduling.draft_min_confidence);
  choice.description += ", draft model " + c.draft_model;
  return choice;
}

// "8192 KV blocks of 16 (q8_0, 15360 bytes per token, 120.0 MiB)"
std::string kv_pool_description(const kv_cache_shape& shape) {
  const int64_t bytes_per_token = shape.bytes_per_block / std::max(shape.block_size, 1);
  char mib[32];
  std::snprintf(mib, sizeof mib, "%.1f", (double)shape.bytes_per_block * shape.num_blocks / (1 << 20));
  return std::to_string(shape.num_blocks) + " KV blocks of " + std::to_string(shape.block_size) + " (" +
         std::string(name_of(shape.dtype)) + ", " + std::to_string(bytes_per_token) + " bytes per token, " + mib +
         " MiB)";
}

}  // namespace

started_engine start_engine(caf::actor_system& sys, const config& cfg, std::shared_ptr<metrics_registry> metrics) {
  cfg.validate();
  auto file = std::make_shared<const gguf::file>(gguf::file::open(cfg.model));
  int32_t max_model_len = cfg.scheduling.max_model_len;
  std::shared_ptr<const gguf::file> draft_file;
  if (!cfg.draft_model.empty()) {
    draft_file = std::make_shared<const gguf::file>(gguf::file::open(cfg.draft_model));
    // The draft sees every position the target does.
    const int32_t draft_context = model_config::from_gguf(*draft_file).context_length;
    max_model_len = max_model_len > 0 ? std::min(max_model_len, draft_context) : draft_context;
  }
  // max_model_len 0 = the model's whole context; model_bundle caps any length by it.
  auto model = model_bundle::load(file, max_model_len);
  if (draft_file) check_draft_vocabulary(model->tok, tokenizer::from_gguf(*draft_file));
  auto choice = make_backends(cfg, file, *model, draft_file);
  auto b = with_injected_faults(choice.ranks.front());
  engine_options eo;
  eo.scheduling = cfg.scheduling;
  eo.scheduling.max_model_len = model->max_model_len;
  eo.enable_prefix_caching = cfg.enable_prefix_caching;
  eo.metrics = std::move(metrics);
  eo.more_ranks.assign(choice.ranks.begin() + 1, choice.ranks.end());
  if (b->num_swap_blocks() > 0) eo.scheduling.preemption = preemption_mode::swap;
  // A worker stuck in a step is replaced over a fresh backend: on the CPU another one from
  // the same mapped file (packed again, with its own KV pool and threads). A CUDA device's
  // memory stays with the stuck kernel (and a call into a hung device may hang too), so
  // there the engine fails instead.
  if (!choice.is_cuda) {
    eo.make_backend = [cfg, file, model, draft_file] {
      return make_backends(cfg, file, *model, draft_file).ranks.front();
    };
  } else {
    eo.make_backend = []() -> std::shared_ptr<backend> {
      throw error(error_code::unsupported,
                  "a CUDA backend is not built again while the stuck kernel holds its device (restart the server)");
    };
  }
  eo.scheduling.speculative = parse_speculative_method(cfg.speculative);
  if (eo.scheduling.speculative != speculative_method::off && !b->supports_speculation()) {
    throw error(error_code::unsupported, "--speculative " + cfg.speculative + ": the " +
                                             std::string(choice.is_cuda ? "CUDA" : "chosen") +
                                             " backend does not verify proposed tokens (use --device cpu)");
  }
  // On the CPU the step uses every core, and planning beside it only takes cycles from it.
  eo.scheduling.async_scheduling =
      cfg.async_scheduling == "on" || (cfg.async_scheduling == "auto" && choice.is_cuda);
  started_engine out;
  out.description = choice.description + ", max_model_len " + std::to_string(model->max_model_len) + ", " +
                    kv_pool_description(b->kv_shape()) +
                    (eo.scheduling.async_scheduling ? ", asynchronous scheduling" : "");
  out.eng = std::make_unique<engine>(sys, std::move(model), std::move(b), std::move(eo));
  return out;
}

engine_actor spawn_engine(caf::actor_system& sys, const config& cfg) {
  return spawn_engine_actor(sys, start_engine(sys, cfg).eng);
}

}  // namespace troupe

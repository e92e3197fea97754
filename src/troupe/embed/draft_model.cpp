// --draft-model: the draft's file checked against the target's vocabulary, the shared
// pool's size, and the draft_backend around the target.
#include "troupe/embed/draft_model.hpp"

#include <algorithm>

#include "troupe/model/draft_backend.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/kv_cache_dtype.hpp"

namespace troupe {

std::shared_ptr<const gguf::file> open_draft_model(const std::string& path, const tokenizer& target) {
  auto file = std::make_shared<const gguf::file>(gguf::file::open(path));
  check_draft_vocabulary(target, tokenizer::from_gguf(*file));
  return file;
}

void size_pool_for_draft(cpu::cpu_backend_options& options, const model_config& target, const model_config& draft,
                         int64_t kv_cache_bytes, double swap_bytes) {
  const auto bytes = [&](const model_config& m) {
    return kv_block_bytes(options.kv_dtype, m.num_layers, options.block_size, m.kv_dim());
  };
  const int64_t block_bytes = bytes(target) + bytes(draft);
  int64_t budget = kv_cache_bytes;
  if (budget <= 0) {
    // The CPU backend's own default (kv_pool_num_blocks), for both models' bytes per position.
    const int64_t positions = std::max<int64_t>(4LL * target.context_length, 16384);
    budget = std::min<int64_t>(positions * block_bytes / options.block_size, 1LL << 30);
  }
  const int64_t num_blocks = budget / block_bytes;
  if (num_blocks < 1 || num_blocks > INT32_MAX / 2) {
    throw error(error_code::invalid_argument, "the KV cache must hold at least one block of the target's and the "
                                              "draft's KV together (kv_cache_bytes too small)");
  }
  options.num_blocks = static_cast<int32_t>(num_blocks);
  options.num_swap_blocks = static_cast<int32_t>(swap_bytes / static_cast<double>(block_bytes));
}

std::shared_ptr<backend> with_draft_model(std::shared_ptr<backend> target, std::shared_ptr<const gguf::file> draft_file,
                                          const cpu::cpu_backend_options& options, int64_t draft_vocab,
                                          double min_confidence) {
  auto draft_options = options;
  draft_options.num_output_rows = draft_vocab;
  if (const auto* cpu_target = dynamic_cast<const cpu::cpu_backend*>(target.get())) {
    draft_options.pool = cpu_target->pool();
  }
  auto draft = std::make_shared<cpu::cpu_backend>(std::move(draft_file), draft_options);
  return std::make_shared<draft_backend>(std::move(target), std::move(draft), options.eog_ids, min_confidence);
}

}  // namespace troupe

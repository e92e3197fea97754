// Loading a draft model for speculative decoding beside the target (--draft-model): its
// vocabulary checked against the target's, one KV pool sized for both models, and the
// target's backend wrapped by the draft_backend that runs the draft (model/draft_backend.hpp).
// CPU only.
#pragma once
#include <memory>
#include <string>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/backend.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/tokenizer.hpp"

namespace troupe {

// Opens the GGUF at `path`; throws troupe::error (invalid_argument, naming the first
// difference) when its vocabulary is not the target's, or as gguf::file::open does.
std::shared_ptr<const gguf::file> open_draft_model(const std::string& path, const tokenizer& target);

// Sets options.num_blocks so that both models' KV of that many blocks fits in
// kv_cache_bytes (0: the CPU default rule applied to the two models' bytes per position
// together), and options.num_swap_blocks so that both fit in swap_bytes. Throws
// troupe::error(invalid_argument) when not even one block fits.
void size_pool_for_draft(cpu::cpu_backend_options& options, const model_config& target, const model_config& draft,
                         int64_t kv_cache_bytes, double swap_bytes);

// The draft model on the CPU with `options` (those of the target's pool) and `target`
// wrapped so that its steps fill draft_slot proposals from it. draft_vocab > 0: the draft's
// head covers token ids below it only (cpu_backend_options::num_output_rows);
// min_confidence: as draft_backend's.
std::shared_ptr<backend> with_draft_model(std::shared_ptr<backend> target, std::shared_ptr<const gguf::file> draft_file,
                                          const cpu::cpu_backend_options& options, int64_t draft_vocab = 0,
                                          double min_confidence = 0.0);

}  // namespace troupe

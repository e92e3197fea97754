// Everything about a loaded model that the request side needs (tokenizer, chat template,
// limits), shared read-only by every request actor.
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "troupe/grammar/compile.hpp"
#include "troupe/model/chat_template.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/model_config.hpp"
#include "troupe/model/tokenizer.hpp"

namespace troupe {

struct model_bundle {
  std::shared_ptr<const gguf::file> file;
  model_config config;
  tokenizer tok;
  chat_template tmpl;
  std::string name;           // as served (general.name or the file name)
  int32_t max_model_len = 0;  // prompt + output, after every cap

  // Structured output: the compiled grammars bound to this vocabulary, shared by every
  // request (a schema is compiled once). The vocabulary trie is built on first use.
  // Thread-safe. Throws troupe::error(invalid_argument) for what the grammar refuses.
  std::shared_ptr<const grammar_masks> grammar(const grammar_spec& spec) const;
  struct grammar_registry {
    std::once_flag once;
    std::shared_ptr<grammar_cache> cache;
  };
  std::shared_ptr<grammar_registry> grammars = std::make_shared<grammar_registry>();

  // Loads tokenizer, template and config from a GGUF after a sampled scan of its tensors for
  // NaN and infinity (model/tensor_check.hpp); an unrecognised chat template falls back to
  // ChatML. Throws troupe::error.
  static std::shared_ptr<const model_bundle> load(std::shared_ptr<const gguf::file> file, int32_t max_model_len);
};

}  // namespace troupe

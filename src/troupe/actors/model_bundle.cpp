#include "troupe/actors/model_bundle.hpp"

#include <algorithm>
#include <filesystem>

#include "troupe/model/error.hpp"
#include "troupe/model/tensor_check.hpp"

namespace troupe {

namespace {
chat_template template_of(const gguf::file& file) {
  try {
    return chat_template::from_gguf(file);
  } catch (const error& e) {
    if (e.code() != error_code::unsupported) throw;
    return chat_template::from_name("chatml");
  }
}
}  // namespace

std::shared_ptr<const model_bundle> model_bundle::load(std::shared_ptr<const gguf::file> file, int32_t max_model_len) {
  auto config = model_config::from_gguf(*file);
  check_tensor_values(*file);
  auto tok = tokenizer::from_gguf(*file);
  auto tmpl = template_of(*file);
  auto name = config.name;
  const int32_t len = max_model_len > 0 ? std::min(max_model_len, config.context_length) : config.context_length;
  return std::make_shared<const model_bundle>(
      model_bundle{std::move(file), std::move(config), std::move(tok), std::move(tmpl), std::move(name), len});
}

std::shared_ptr<const grammar_masks> model_bundle::grammar(const grammar_spec& spec) const {
  std::call_once(grammars->once, [this] { grammars->cache = std::make_shared<grammar_cache>(token_trie::from_tokenizer(tok)); });
  return grammars->cache->get(spec);
}

}  // namespace troupe

// Builds a tokenizer from GGUF metadata the way llama.cpp's llama_vocab::load does:
// vocabulary, merges, special ids and flags, end-of-generation set, piece cache. Metadata
// that llama.cpp would silently repair (ids out of range) is refused with invalid_model.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>

#include "troupe/model/error.hpp"
#include "troupe/model/tokenizer_vocab.hpp"
#include "troupe/model/unicode.hpp"

namespace troupe {
namespace {

using namespace tokenizer_detail;

[[noreturn]] void fail(const std::string& message) { throw error(error_code::invalid_model, message); }

const std::vector<std::string>& string_array(const gguf::file& file, const std::string& key) {
  const gguf::array_value* a = file.get_array(key);
  if (a == nullptr) fail("tokenizer: missing " + key);
  if (a->element_type != gguf::value_type::string) fail("tokenizer: " + key + " is not an array of strings");
  return a->strings;
}

uint32_t attrs_of_type(int64_t type) {
  switch (static_cast<token_kind>(type)) {
    case token_kind::normal: return attr_normal;
    case token_kind::unknown: return attr_unknown;
    case token_kind::control: return attr_control;
    case token_kind::user_defined: return attr_user_defined;
    case token_kind::unused: return attr_unused;
    case token_kind::byte: return attr_byte;
    default: return 0;
  }
}

void read_tokens(const gguf::file& file, tokenizer_state& t) {
  const auto& texts = string_array(file, "tokenizer.ggml.tokens");
  if (texts.empty()) fail("tokenizer: tokenizer.ggml.tokens is empty");
  const size_t n = texts.size();
  const gguf::array_value* scores = file.get_array("tokenizer.ggml.scores");
  if (scores != nullptr && scores->size() < n) fail("tokenizer: tokenizer.ggml.scores has fewer entries than tokens");
  const gguf::array_value* types = file.get_array("tokenizer.ggml.token_type");
  if (types != nullptr && (types->ints.size() < n)) {
    fail("tokenizer: tokenizer.ggml.token_type is not an integer array with one entry per token");
  }
  t.vocab.tokens.resize(n);
  t.vocab.ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    token_entry& e = t.vocab.tokens[i];
    e.text = texts[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : texts[i];
    if (scores != nullptr) {
      e.score = !scores->floats.empty() ? static_cast<float>(scores->floats[i]) : static_cast<float>(scores->ints[i]);
    }
    if (types != nullptr) e.attrs = attrs_of_type(types->ints[i]);
    t.vocab.ids[e.text] = static_cast<int32_t>(i);
  }
}

void read_merges(const gguf::file& file, tokenizer_state& t) {
  const std::string key = "tokenizer.ggml.merges";
  const auto& merges = string_array(file, key);
  t.bpe.merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    const size_t space = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (space == std::string::npos) fail("tokenizer: " + key + "[" + std::to_string(rank) + "] has no space");
    const std::string_view left = std::string_view(m).substr(0, space);
    const std::string_view right = std::string_view(m).substr(space + 1);
    const int32_t a = t.vocab.find(left), b = t.vocab.find(right);
    if (a < 0 || b < 0) {
      fail("tokenizer: " + key + "[" + std::to_string(rank) + "] \"" + m + "\" names a token not in the vocabulary");
    }
    t.bpe.merges.emplace(merge_key(a, b), bpe_merge{static_cast<int32_t>(rank), t.vocab.find(std::string(left) + std::string(right))});
  }
  for (int b = 0; b < 256; ++b) t.bpe.byte_ids[b] = t.vocab.find(unicode::byte_to_bpe_text(static_cast<uint8_t>(b)));
}

// An id from the metadata, or the default when absent. Out of range is an error.
int32_t special_id(const gguf::file& file, const std::string& key, int32_t fallback, int32_t num_tokens) {
  const std::optional<int64_t> v = file.get_int(key);
  if (!v) return fallback < num_tokens ? fallback : -1;
  if (*v < 0 || *v >= num_tokens) {
    fail("tokenizer: " + key + " = " + std::to_string(*v) + " is outside the vocabulary (0.." +
         std::to_string(num_tokens - 1) + ")");
  }
  return static_cast<int32_t>(*v);
}

bool is_one_of(const std::string& text, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), text) != list.end();
}

// llama.cpp recognises end-of-turn and FIM tokens by their text when the metadata does not
// name them, and marks them control. Among several candidates the lowest id is taken.
int32_t detect_by_text(tokenizer_state& t, int32_t current, std::initializer_list<std::string_view> texts) {
  if (current >= 0) return current;
  for (int32_t id = 0; id < t.vocab.size(); ++id) {
    if (is_one_of(t.vocab.tokens[id].text, texts)) {
      t.vocab.tokens[id].attrs |= attr_control;
      return id;
    }
  }
  return -1;
}

void find_end_of_generation(const gguf::file& file, tokenizer_state& t) {
  const int32_t n = t.vocab.size();
  t.eot_id = detect_by_text(t, special_id(file, "tokenizer.ggml.eot_token_id", -1, n),
                            {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                             "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
                             "<end_of_utterance>"});
  t.eom_id = detect_by_text(t, special_id(file, "tokenizer.ggml.eom_token_id", -1, n), {"<|eom_id|>"});
  detect_by_text(t, special_id(file, "tokenizer.ggml.fim_pre_token_id", -1, n),
                 {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                  "<|code_prefix|>", "<|prefix|>"});
  detect_by_text(t, special_id(file, "tokenizer.ggml.fim_suf_token_id", -1, n),
                 {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                  "<|code_suffix|>", "<|suffix|>"});
  detect_by_text(t, special_id(file, "tokenizer.ggml.fim_mid_token_id", -1, n),
                 {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                  "<|code_middle|>", "<|middle|>"});
  const int32_t fim_pad = detect_by_text(t, special_id(file, "tokenizer.ggml.fim_pad_token_id", -1, n),
                                         {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"});
  const int32_t fim_rep = detect_by_text(t, special_id(file, "tokenizer.ggml.fim_rep_token_id", -1, n),
                                         {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"});
  const int32_t fim_sep = detect_by_text(t, special_id(file, "tokenizer.ggml.fim_sep_token_id", -1, n),
                                         {"<|file_sep|>"});

  std::vector<int32_t> eog;
  for (const int32_t id : {fim_pad, fim_rep, fim_sep, t.eos_id, t.eot_id, t.eom_id}) {
    if (id >= 0) eog.push_back(id);
  }
  for (int32_t id = 0; id < n; ++id) {
    token_entry& e = t.vocab.tokens[id];
    if (is_one_of(e.text, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                           "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                           "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                           "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["})) {
      eog.push_back(id);
      e.attrs |= attr_control;
    }
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  t.eog_ids = std::move(eog);
}

std::string piece_for_cache(const tokenizer_state& t, int32_t id) {
  const token_entry& e = t.vocab.tokens[id];
  if (e.attrs & (attr_unknown | attr_control | attr_user_defined)) return e.text;
  if (e.attrs & attr_normal) {
    std::string out;
    if (t.is_spm) {
      for (size_t i = 0; i < e.text.size(); ++i) {
        if (e.text.compare(i, 3, "\xE2\x96\x81") == 0) {
          out += ' ';
          i += 2;
        } else {
          out += e.text[i];
        }
      }
      return out;
    }
    for (const uint32_t cp : unicode::decode_lenient(e.text)) {
      const int b = unicode::bpe_code_point_to_byte(cp);
      if (b >= 0) {
        out += static_cast<char>(b);
        continue;
      }
      std::string utf8;  // llama.cpp's marker for a character outside the byte mapping
      unicode::append_utf8(utf8, cp);
      out += "[UNK_BYTE_0x";
      for (const char c : utf8) {
        static constexpr char hex[] = "0123456789abcdef";
        out += hex[static_cast<uint8_t>(c) >> 4];
        out += hex[static_cast<uint8_t>(c) & 15];
      }
      out += e.text + "]";
    }
    return out;
  }
  if ((e.attrs & attr_byte) && e.text.size() >= 5) {
    return std::string(1, static_cast<char>(std::strtol(e.text.substr(3, 2).c_str(), nullptr, 16)));
  }
  return {};
}

}  // namespace

tokenizer tokenizer::from_gguf(const gguf::file& file) {
  tokenizer tok;
  impl& t = *tok.impl_;
  const std::optional<std::string> model = file.get_string("tokenizer.ggml.model");
  if (!model) fail("tokenizer: missing tokenizer.ggml.model");
  if (*model != "gpt2" && *model != "llama") {
    throw error(error_code::unsupported, "tokenizer: tokenizer.ggml.model \"" + *model +
                                             "\" is not supported (gpt2 and llama are)");
  }
  t.model_name = *model;
  t.is_spm = *model == "llama";
  t.pre_name = file.get_string("tokenizer.ggml.pre").value_or("");
  read_tokens(file, t);
  const int32_t n = t.vocab.size();

  if (t.is_spm) {
    t.add_bos = true;
    t.add_space_prefix = true;
  } else {
    read_merges(file, t);
    t.pre = pre_tokenizer_from_name(t.pre_name);
    t.add_bos = t.pre.adds_bos;
    t.clean_spaces = t.pre.clean_spaces;
  }
  t.bos_id = special_id(file, "tokenizer.ggml.bos_token_id", t.is_spm ? 1 : 11, n);
  t.eos_id = special_id(file, "tokenizer.ggml.eos_token_id", t.is_spm ? 2 : 11, n);
  t.unk_id = special_id(file, "tokenizer.ggml.unknown_token_id", t.is_spm ? 0 : -1, n);
  t.add_bos = file.get_bool("tokenizer.ggml.add_bos_token").value_or(t.add_bos);
  t.add_eos = file.get_bool("tokenizer.ggml.add_eos_token").value_or(t.add_eos);
  t.add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(t.add_space_prefix);
  if (t.add_bos && t.bos_id < 0) fail("tokenizer: tokenizer.ggml.add_bos_token is set but there is no BOS token");
  if (t.add_eos && t.eos_id < 0) fail("tokenizer: tokenizer.ggml.add_eos_token is set but there is no EOS token");

  find_end_of_generation(file, t);

  for (int32_t id = 0; id < n; ++id) {
    if (t.vocab.tokens[id].attrs & (attr_control | attr_user_defined | attr_unknown)) t.special_ids.push_back(id);
  }
  std::stable_sort(t.special_ids.begin(), t.special_ids.end(), [&](int32_t a, int32_t b) {
    return t.vocab.tokens[a].text.size() > t.vocab.tokens[b].text.size();
  });
  unicode::flags_of(0);  // builds the category table now rather than in the first encode
  t.pieces.reserve(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) t.pieces.push_back(piece_for_cache(t, id));
  return tok;
}

}  // namespace troupe

// The tokenizer's public face: special-token partitioning, encode (BPE or SentencePiece
// per fragment), token_to_piece / decode as llama.cpp renders them, and the incremental
// decoder that never splits a UTF-8 character.
#include "troupe/model/tokenizer.hpp"

#include <algorithm>

#include "troupe/model/error.hpp"
#include "troupe/model/pretokenizer.hpp"
#include "troupe/model/tokenizer_vocab.hpp"
#include "troupe/model/unicode.hpp"

namespace troupe {
namespace {

using namespace tokenizer_detail;

struct fragment {
  int32_t token;  // -1 for raw text
  size_t begin;
  size_t length;
};

// Splits text around exact occurrences of special token texts, longest first, like
// llama.cpp's tokenizer_st_partition. Without parse_special, control and unknown token
// texts stay plain text; user-defined ones are still split out.
std::vector<fragment> partition(const tokenizer_state& t, std::string_view text, bool parse_special) {
  std::vector<fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({-1, 0, text.size()});
  std::vector<fragment> next;
  for (const int32_t id : t.special_ids) {
    const token_entry& e = t.vocab.tokens[id];
    if (!parse_special && (e.attrs & (attr_control | attr_unknown))) continue;
    bool is_found = false;
    next.clear();
    for (const fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const std::string_view raw = text.substr(f.begin, f.length);
      size_t pos = 0;
      for (size_t match; (match = raw.find(e.text, pos)) != std::string_view::npos; pos = match + e.text.size()) {
        is_found = true;
        if (match > pos) next.push_back({-1, f.begin + pos, match - pos});
        next.push_back({id, 0, 0});
      }
      if (pos < raw.size()) next.push_back({-1, f.begin + pos, raw.size() - pos});
    }
    if (is_found) fragments.swap(next);
  }
  return fragments;
}

void encode_bpe(const tokenizer_state& t, std::string_view text, std::vector<int32_t>& out) {
  const std::vector<uint32_t> cpts = unicode::decode_lenient(text);
  std::string piece;
  size_t begin = 0;
  for (const size_t len : pre_tokenize(t.pre.kind, cpts)) {
    piece.clear();
    for (size_t i = begin; i < begin + len; ++i) unicode::append_utf8(piece, cpts[i]);
    bpe_encode_piece(t.vocab, t.bpe, piece, t.pre.ignore_merges, out);
    begin += len;
  }
}

void encode_spm(const tokenizer_state& t, std::string_view text, bool is_after_special, std::vector<int32_t>& out) {
  std::string escaped;
  escaped.reserve(text.size() + 3);
  if (t.add_space_prefix && is_after_special) escaped += "\xE2\x96\x81";
  for (const char c : text) {
    if (c == ' ') {
      escaped += "\xE2\x96\x81";
    } else {
      escaped += c;
    }
  }
  spm_encode_fragment(t.vocab, escaped, t.unk_id, out);
}

// llama.cpp's clean_up_tokenization_spaces, three in-place passes over the bytes.
void clean_spaces(std::string& s) {
  auto pass = [&s](auto keep) {
    if (s.empty()) return;
    size_t total = 1;
    for (size_t i = 1; i < s.size(); ++i) total = keep(i, total);
    s.resize(total);
  };
  pass([&s](size_t i, size_t total) {  // " ?", " !", " .", " ,"
    const char x = s[i];
    if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
    s[total] = x;
    return total + 1;
  });
  for (size_t i = 1; i + 1 < s.size(); ++i) {  // " ' " -> "'"
    if (s[i] == '\'' && s[i - 1] == ' ' && s[i + 1] == ' ') {
      s.erase(i + 1, 1);
      s.erase(i - 1, 1);
    }
  }
  pass([&s](size_t i, size_t total) {  // " 's", " 'm", " 're", " 've"
    const char x = s[i];
    if (s[i - 1] == ' ' && x == '\'' && i + 1 < s.size()) {
      const char x1 = s[i + 1];
      const char x2 = i + 2 < s.size() ? s[i + 2] : '\0';
      if (x1 == 's' || x1 == 'm' || ((x1 == 'r' || x1 == 'v') && x2 == 'e' && i + 2 < s.size())) --total;
    }
    s[total] = x;
    return total + 1;
  });
}

const token_entry& entry(const tokenizer_state& t, int32_t id) {
  if (id < 0 || id >= t.vocab.size()) {
    throw error(error_code::invalid_argument, "token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                                  std::to_string(t.vocab.size() - 1) + ")");
  }
  return t.vocab.tokens[static_cast<size_t>(id)];
}

}  // namespace

tokenizer::tokenizer() : impl_(std::make_unique<impl>()) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const impl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && t.add_bos) out.push_back(t.bos_id);
  bool is_after_special = true;  // SentencePiece prefixes a space to the first fragment
  for (const fragment& f : partition(t, text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      is_after_special = true;
      continue;
    }
    const std::string_view raw = text.substr(f.begin, f.length);
    if (t.is_spm) {
      encode_spm(t, raw, is_after_special, out);
    } else {
      encode_bpe(t, raw, out);
    }
    is_after_special = false;
  }
  if (add_special && t.add_eos) out.push_back(t.eos_id);
  return out;
}

std::string tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const uint32_t attrs = entry(*impl_, id).attrs;  // validates id
  if (!render_special && (attrs & (attr_control | attr_unknown))) return {};
  return impl_->pieces[static_cast<size_t>(id)];
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string piece = token_to_piece(ids[i], render_special);
    // A model that prefixes a space when encoding drops it from the first piece.
    if (i == 0 && impl_->add_space_prefix && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    out += piece;
  }
  if (impl_->clean_spaces) clean_spaces(out);
  return out;
}

int32_t tokenizer::vocab_size() const { return impl_->vocab.size(); }

token_kind tokenizer::kind(int32_t id) const {
  const uint32_t a = entry(*impl_, id).attrs;
  if (a & attr_control) return token_kind::control;
  if (a & attr_unknown) return token_kind::unknown;
  if (a & attr_user_defined) return token_kind::user_defined;
  if (a & attr_byte) return token_kind::byte;
  if (a & attr_unused) return token_kind::unused;
  if (a & attr_normal) return token_kind::normal;
  return token_kind::undefined;
}

const std::string& tokenizer::token_text(int32_t id) const { return entry(*impl_, id).text; }
int32_t tokenizer::bos_id() const { return impl_->bos_id; }
int32_t tokenizer::eos_id() const { return impl_->eos_id; }
bool tokenizer::adds_bos() const { return impl_->add_bos; }
const std::vector<int32_t>& tokenizer::eog_ids() const { return impl_->eog_ids; }
bool tokenizer::is_eog(int32_t id) const {
  return std::binary_search(impl_->eog_ids.begin(), impl_->eog_ids.end(), id);
}
std::string_view tokenizer::model_name() const { return impl_->model_name; }
std::string_view tokenizer::pre_name() const { return impl_->pre_name; }

incremental_decoder::incremental_decoder(const tokenizer& tok, bool render_special)
    : tok_(&tok), render_special_(render_special) {}

std::string incremental_decoder::push(int32_t id) {
  pending_ += tok_->token_to_piece(id, render_special_);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int r = unicode::check_sequence(std::string_view(pending_).substr(i));
    if (r == 0) break;  // an incomplete character: wait for the next token
    if (r > 0) {
      out.append(pending_, i, static_cast<size_t>(r));
      i += static_cast<size_t>(r);
    } else {
      unicode::append_utf8(out, unicode::replacement_char);
      i += static_cast<size_t>(-r);
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string incremental_decoder::flush() {
  std::string out = unicode::sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace troupe

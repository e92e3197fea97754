// Building the vocabulary trie from sorted pieces, in one pass.
#include "troupe/grammar/token_trie.hpp"

#include <algorithm>
#include <numeric>

#include "troupe/model/error.hpp"
#include "troupe/model/tokenizer.hpp"

namespace troupe {

std::shared_ptr<const token_trie> token_trie::from_tokenizer(const tokenizer& tok) {
  const int32_t n = tok.vocab_size();
  std::vector<std::string> pieces(n);
  std::vector<bool> is_text(n);
  for (int32_t id = 0; id < n; ++id) {
    const token_kind kind = tok.kind(id);
    pieces[id] = tok.token_to_piece(id, false);
    is_text[id] = kind != token_kind::control && kind != token_kind::unknown &&
                  kind != token_kind::unused && !pieces[id].empty() && !tok.is_eog(id);
  }
  return std::make_shared<const token_trie>(std::move(pieces), std::move(is_text), tok.eog_ids());
}

token_trie::token_trie(std::vector<std::string> pieces, std::vector<bool> is_text,
                       std::vector<int32_t> eog_ids)
    : pieces_(std::move(pieces)), is_text_(std::move(is_text)), eog_ids_(std::move(eog_ids)) {
  if (is_text_.size() != pieces_.size()) {
    throw error(error_code::invalid_argument, "token_trie: one is_text flag per piece is needed");
  }
  for (const int32_t id : eog_ids_) {
    if (id < 0 || id >= vocab_size()) {
      throw error(error_code::invalid_argument, "token_trie: end-of-generation id " +
                                                    std::to_string(id) + " is outside the vocabulary");
    }
    is_text_[id] = false;
  }
  std::sort(eog_ids_.begin(), eog_ids_.end());
  std::vector<int32_t> order;
  for (int32_t id = 0; id < vocab_size(); ++id) {
    if (is_text_[id] && !pieces_[id].empty()) {
      order.push_back(id);
    } else {
      is_text_[id] = false;
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return pieces_[a] < pieces_[b]; });

  // Sorted pieces: each one shares a prefix with the one before; the nodes past that
  // prefix are closed (their subtree ends here) and the rest of the piece opened.
  std::vector<uint32_t> open;  // open[d] is the node at depth d + 1 on the current path
  std::string_view previous;
  token_begin_.push_back(0);
  auto close_to = [&](size_t depth) {
    while (open.size() > depth) {
      subtree_end_[open.back()] = num_nodes();
      open.pop_back();
    }
  };
  for (const int32_t id : order) {
    const std::string_view p = pieces_[id];
    size_t common = 0;
    while (common < p.size() && common < previous.size() && p[common] == previous[common]) ++common;
    close_to(common);
    for (size_t d = common; d < p.size(); ++d) {
      open.push_back(num_nodes());
      byte_.push_back(static_cast<uint8_t>(p[d]));
      depth_.push_back(static_cast<uint32_t>(d + 1));
      subtree_end_.push_back(0);
      token_begin_.push_back(token_begin_.back());
    }
    token_ids_.push_back(id);
    ++token_begin_.back();
    max_depth_ = std::max<uint32_t>(max_depth_, static_cast<uint32_t>(p.size()));
    previous = p;
  }
  close_to(0);
}

bool token_trie::is_eog(int32_t id) const {
  return std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

}  // namespace troupe

// A vocabulary as a byte trie, built once per tokenizer and shared (immutable, so any
// number of threads may read it): every token's bytes (token_to_piece without special
// rendering), laid out in depth-first order so that a walk is a loop over arrays that skips
// a dead subtree in one jump. Control, unknown and unused tokens, empty pieces and the
// end-of-generation ids are not in the trie: a grammar never produces them as text.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class tokenizer;

class token_trie {
 public:
  static std::shared_ptr<const token_trie> from_tokenizer(const tokenizer& tok);
  // pieces[id] are the token's bytes; is_text[id] false keeps it out of the trie.
  token_trie(std::vector<std::string> pieces, std::vector<bool> is_text, std::vector<int32_t> eog_ids);

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  std::string_view piece(int32_t id) const { return pieces_[id]; }
  bool is_text(int32_t id) const { return is_text_[id]; }
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }
  bool is_eog(int32_t id) const;

  // Nodes 0..num_nodes()-1 in depth-first order; node i's descendants are
  // i+1..subtree_end(i)-1. The root (the empty prefix) is not a node.
  uint32_t num_nodes() const { return static_cast<uint32_t>(byte_.size()); }
  uint8_t byte(uint32_t node) const { return byte_[node]; }
  uint32_t depth(uint32_t node) const { return depth_[node]; }  // 1 for a root child
  uint32_t subtree_end(uint32_t node) const { return subtree_end_[node]; }
  bool has_children(uint32_t node) const { return subtree_end_[node] != node + 1; }
  // The tokens whose piece ends at `node` (several tokens may share a piece).
  const int32_t* tokens_begin(uint32_t node) const { return token_ids_.data() + token_begin_[node]; }
  const int32_t* tokens_end(uint32_t node) const { return token_ids_.data() + token_begin_[node + 1]; }
  uint32_t max_depth() const { return max_depth_; }

 private:
  std::vector<std::string> pieces_;
  std::vector<bool> is_text_;
  std::vector<int32_t> eog_ids_;
  std::vector<uint8_t> byte_;
  std::vector<uint32_t> depth_;
  std::vector<uint32_t> subtree_end_;
  std::vector<uint32_t> token_begin_;  // num_nodes + 1 offsets into token_ids_
  std::vector<int32_t> token_ids_;
  uint32_t max_depth_ = 0;
};

}  // namespace troupe

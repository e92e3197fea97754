// Byte-level BPE merging of one pre-tokenized piece: start from one symbol per byte, then
// repeatedly merge the adjacent pair with the lowest merge rank (leftmost on ties).
#include <algorithm>

#include "troupe/model/tokenizer_vocab.hpp"
#include "troupe/model/unicode.hpp"

namespace troupe::tokenizer_detail {
namespace {

struct symbol {
  int32_t id;     // token of the symbol's text, -1 if none
  uint32_t begin; // byte range in the piece
  uint32_t num_bytes;
  int32_t prev;
  int32_t next;
};

struct candidate {
  int32_t rank;
  int32_t left;   // symbol indices
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t merged_id;
};

// Heap order: the top is the lowest rank, then the leftmost pair.
bool comes_later(const candidate& a, const candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
}

std::string mapped_text(std::string_view bytes) {
  std::string s;
  for (const char c : bytes) s += unicode::byte_to_bpe_text(static_cast<uint8_t>(c));
  return s;
}

}  // namespace

void bpe_encode_piece(const vocab& v, const bpe_model& model, std::string_view piece,
                      bool ignore_merges, std::vector<int32_t>& out) {
  if (piece.empty()) return;
  if (ignore_merges) {
    const int32_t whole = v.find(mapped_text(piece));
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }

  const auto n = static_cast<int32_t>(piece.size());
  std::vector<symbol> symbols(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {model.byte_ids[static_cast<uint8_t>(piece[i])], static_cast<uint32_t>(i), 1, i - 1,
                  i + 1 < n ? i + 1 : -1};
  }

  std::vector<candidate> heap;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = symbols[left].id, b = symbols[right].id;
    if (a < 0 || b < 0) return;
    const auto it = model.merges.find(merge_key(a, b));
    if (it == model.merges.end()) return;
    heap.push_back({it->second.rank, left, right, a, b, it->second.merged_id});
    std::push_heap(heap.begin(), heap.end(), comes_later);
  };
  for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), comes_later);
    const candidate c = heap.back();
    heap.pop_back();
    symbol& left = symbols[c.left];
    symbol& right = symbols[c.right];
    // Stale when either side has merged since the pair was queued.
    if (left.num_bytes == 0 || right.num_bytes == 0 || left.next != c.right || left.id != c.left_id ||
        right.id != c.right_id) {
      continue;
    }
    left.num_bytes += right.num_bytes;
    left.id = c.merged_id;
    right.num_bytes = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const symbol& s = symbols[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    // No token for this symbol: like llama.cpp, look up each byte of its mapped text as a
    // one-byte token (found for ASCII-mapped bytes only; the rest are dropped).
    for (const char c : mapped_text(piece.substr(s.begin, s.num_bytes))) {
      const int32_t id = v.find(std::string_view(&c, 1));
      if (id >= 0) out.push_back(id);
    }
  }
}

}  // namespace troupe::tokenizer_detail

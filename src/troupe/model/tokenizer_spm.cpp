// SentencePiece-style merging: start from UTF-8 characters, repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring token (leftmost on ties), then spell any
// symbol that is not a token as <0xXX> byte tokens.
#include <algorithm>
#include <cstdio>

#include "troupe/model/tokenizer_vocab.hpp"
#include "troupe/model/unicode.hpp"

namespace troupe::tokenizer_detail {
namespace {

struct symbol {
  uint32_t begin;
  uint32_t num_bytes;
  int32_t prev;
  int32_t next;
};

struct candidate {
  float score;
  int32_t left;
  int32_t right;
  uint32_t num_bytes;  // of the merged text, to detect stale pairs
};

// Heap order: the top is the highest score, then the leftmost pair.
bool comes_later(const candidate& a, const candidate& b) {
  return a.score != b.score ? a.score < b.score : a.left > b.left;
}

void append_bytes(const vocab& v, std::string_view text, int32_t unk_id, std::vector<int32_t>& out) {
  for (const char c : text) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", static_cast<unsigned>(static_cast<uint8_t>(c)));
    int32_t id = v.find(hex);
    if (id < 0) id = v.find(std::string_view(&c, 1));
    if (id < 0) id = unk_id;  // llama.cpp throws here; the unknown token is the kinder answer
    if (id >= 0) out.push_back(id);
  }
}

}  // namespace

void spm_encode_fragment(const vocab& v, std::string_view text, int32_t unk_id,
                         std::vector<int32_t>& out) {
  std::vector<symbol> symbols;
  symbols.reserve(text.size());
  for (size_t offset = 0; offset < text.size();) {
    const size_t len = std::min(unicode::sequence_length_from_lead(static_cast<uint8_t>(text[offset])),
                                text.size() - offset);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(offset), static_cast<uint32_t>(len), index - 1,
                       offset + len == text.size() ? -1 : index + 1});
    offset += len;
  }
  if (symbols.empty()) return;

  std::vector<candidate> heap;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t num_bytes = symbols[left].num_bytes + symbols[right].num_bytes;
    const int32_t id = v.find(text.substr(symbols[left].begin, num_bytes));
    if (id < 0) return;
    heap.push_back({v.tokens[id].score, left, right, num_bytes});
    std::push_heap(heap.begin(), heap.end(), comes_later);
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), comes_later);
    const candidate c = heap.back();
    heap.pop_back();
    symbol& left = symbols[c.left];
    symbol& right = symbols[c.right];
    if (left.num_bytes == 0 || right.num_bytes == 0 || left.num_bytes + right.num_bytes != c.num_bytes) {
      continue;  // one side merged since the pair was queued
    }
    left.num_bytes += right.num_bytes;
    right.num_bytes = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].begin, symbols[i].num_bytes);
    const int32_t id = v.find(piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      append_bytes(v, piece, unk_id, out);
    }
  }
}

}  // namespace troupe::tokenizer_detail

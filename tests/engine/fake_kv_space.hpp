// A small, obviously correct in-memory kv_space for the scheduler tests: free lists of
// device and host block ids and per-sequence block tables. No reference counts, no
// prefix cache (a scripted hit count stands in for it), so tests do not depend on the
// real block manager.
#pragma once
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "troupe/engine/kv_space.hpp"
#include "troupe/model/error.hpp"

namespace troupe::test {

class fake_kv_space : public kv_space {
 public:
  fake_kv_space(int32_t num_blocks, int32_t block_size, int32_t num_host_blocks = 0)
      : num_blocks_(num_blocks), block_size_(block_size) {
    for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
    for (int32_t b = num_host_blocks - 1; b >= 0; --b) host_free_.push_back(b);
  }

  int32_t block_size() const override { return block_size_; }
  int32_t num_free_blocks() const override { return static_cast<int32_t>(free_.size()); }
  int32_t num_total_blocks() const override { return num_blocks_; }
  int32_t num_free_host_blocks() const { return static_cast<int32_t>(host_free_.size()); }
  int32_t num_sequences_holding_blocks() const { return static_cast<int32_t>(device_.size() + host_.size()); }
  bool is_all_free(int32_t num_host_blocks = 0) const {
    return num_free_blocks() == num_blocks_ && num_free_host_blocks() == num_host_blocks && device_.empty() &&
           host_.empty();
  }

  // Pretend the first `num_tokens` of every prompt are cached (rounded down to whole blocks
  // and kept below the prompt length, as the interface promises).
  void set_cached_prefix_tokens(int32_t num_tokens) { num_cached_prefix_ = num_tokens; }
  int32_t num_cached_prefix_tokens(std::span<const int32_t> prompt) const override {
    const int32_t limit = static_cast<int32_t>(prompt.size()) - 1;
    const int32_t n = std::min(num_cached_prefix_, limit);
    return std::max(0, n / block_size_ * block_size_);
  }

  bool can_grow(uint64_t seq_id, int32_t num_tokens) const override {
    return num_new_blocks(seq_id, num_tokens) <= num_free_blocks();
  }
  kv_operations grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t>) override {
    if (host_.contains(seq_id)) throw error(error_code::internal, "grow of a swapped-out sequence");
    const int32_t need = num_new_blocks(seq_id, num_tokens);
    if (need > num_free_blocks()) throw error(error_code::context_overflow, "fake_kv_space is full");
    auto& table = device_[seq_id];
    for (int32_t i = 0; i < need; ++i) {
      table.push_back(free_.back());
      free_.pop_back();
    }
    return {};
  }
  const std::vector<int32_t>& block_table(uint64_t seq_id) const override {
    static const std::vector<int32_t> empty;
    const auto it = device_.find(seq_id);
    return it == device_.end() ? empty : it->second;
  }
  void truncate(uint64_t seq_id, int32_t num_tokens) override {
    const auto it = device_.find(seq_id);
    if (it == device_.end()) throw error(error_code::invalid_argument, "truncate of a sequence not resident");
    auto& table = it->second;
    const auto keep = static_cast<size_t>((num_tokens + block_size_ - 1) / block_size_);
    while (table.size() > keep) {
      free_.push_back(table.back());
      table.pop_back();
    }
    ++num_truncates_;
  }
  int32_t num_truncates() const { return num_truncates_; }
  void release(uint64_t seq_id) override {
    ++num_releases_;
    give_back(device_, free_, seq_id);
    give_back(host_, host_free_, seq_id);
  }
  void discard(uint64_t seq_id) override { release(seq_id); }
  void fork(uint64_t, uint64_t) override { throw error(error_code::unsupported, "fake_kv_space does not fork"); }
  void reset() override {
    for (const auto& [id, table] : device_) free_.insert(free_.end(), table.begin(), table.end());
    for (const auto& [id, table] : host_) host_free_.insert(host_free_.end(), table.begin(), table.end());
    device_.clear();
    host_.clear();
  }

  bool can_swap_out(uint64_t seq_id) const override {
    const auto it = device_.find(seq_id);
    return it != device_.end() && it->second.size() <= host_free_.size();
  }
  kv_operations swap_out(uint64_t seq_id) override {
    if (!can_swap_out(seq_id)) throw error(error_code::internal, "swap_out that cannot fit");
    return move_blocks(device_, free_, host_, host_free_, seq_id, &kv_operations::swap_out);
  }
  bool can_swap_in(uint64_t seq_id) const override {
    const auto it = host_.find(seq_id);
    return it != host_.end() && it->second.size() <= free_.size();
  }
  kv_operations swap_in(uint64_t seq_id) override {
    if (!can_swap_in(seq_id)) throw error(error_code::internal, "swap_in that cannot fit");
    return move_blocks(host_, host_free_, device_, free_, seq_id, &kv_operations::swap_in);
  }

  int32_t num_releases() const { return num_releases_; }

 private:
  using tables = std::map<uint64_t, std::vector<int32_t>>;

  int32_t num_new_blocks(uint64_t seq_id, int32_t num_tokens) const {
    const auto it = device_.find(seq_id);
    const int32_t have = it == device_.end() ? 0 : static_cast<int32_t>(it->second.size());
    return std::max(0, (num_tokens + block_size_ - 1) / block_size_ - have);
  }
  static void give_back(tables& from, std::vector<int32_t>& free_list, uint64_t seq_id) {
    const auto it = from.find(seq_id);
    if (it == from.end()) return;
    free_list.insert(free_list.end(), it->second.begin(), it->second.end());
    from.erase(it);
  }
  static kv_operations move_blocks(tables& from, std::vector<int32_t>& from_free, tables& to,
                                   std::vector<int32_t>& to_free, uint64_t seq_id,
                                   std::vector<block_copy> kv_operations::*field) {
    kv_operations ops;
    auto& dst = to[seq_id];
    for (int32_t src : from.at(seq_id)) {
      dst.push_back(to_free.back());
      to_free.pop_back();
      (ops.*field).push_back({src, dst.back()});
    }
    give_back(from, from_free, seq_id);
    return ops;
  }

  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<int32_t> free_;
  std::vector<int32_t> host_free_;
  tables device_;
  tables host_;
  int32_t num_cached_prefix_ = 0;
  int32_t num_releases_ = 0;
  int32_t num_truncates_ = 0;
};

}  // namespace troupe::test

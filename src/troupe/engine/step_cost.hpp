// What a step costs, in the unit chunked prefill budgets by: one fed token's work outside
// attention (its matmuls). Attention adds the (query, key) pairs the step attends over,
// divided by `attention_cost`, the number of pairs that cost as much as one token. A chunk
// deep in a long prompt attends over everything before it, so sizing chunks by tokens
// alone lets one step take many times longer than the first chunk did, and every stream
// decoding beside it waits that long for its next token.
#pragma once
#include <array>
#include <cstdint>

#include "troupe/model/model_config.hpp"

namespace troupe {

// Pairs attended when n tokens are fed from position start (causal: token i sees start + i + 1).
inline int64_t attended_pairs(int64_t start, int64_t n) { return n * start + n * (n + 1) / 2; }

// The cost of feeding n tokens from position start; attention_cost 0 counts tokens alone.
inline double step_cost(int64_t start, int64_t n, double attention_cost) {
  return attention_cost > 0 ? static_cast<double>(n) + static_cast<double>(attended_pairs(start, n)) / attention_cost
                            : static_cast<double>(n);
}

// The most tokens that can be fed from position start within `cost` (0 when not even one).
int32_t max_tokens_within(int64_t start, double cost, double attention_cost);

// A first estimate of attention_cost from the model's shape: the multiply-adds of one
// token's matmuls over those of one attended pair, times how much slower per multiply-add
// the backend's attention runs than its matmuls (`attention_efficiency`, in (0, 1]).
double attention_cost_from_shape(const model_config& config, double attention_efficiency);

// Fits step seconds = a·tokens + b·pairs + c by least squares over recent steps (older
// ones weigh less), so that attention_cost follows the machine and the backend actually
// serving. Until the steps seen vary enough in both tokens and pairs for the fit to tell
// the two apart, it answers the prior; then it moves toward the fit a quarter of the way
// (in log space) per step, within four times the prior.
class step_cost_model {
 public:
  explicit step_cost_model(double prior_attention_cost, double forgetting = 0.98);

  void observe(int64_t num_tokens, int64_t num_pairs, double seconds);
  double attention_cost() const { return attention_cost_; }
  bool is_fitted() const { return is_fitted_; }

 private:
  void refit();

  double prior_;
  double forgetting_;
  double attention_cost_;
  bool is_fitted_ = false;
  // Weighted sums of x·xᵀ and x·t for x = (1, tokens, pairs / 1000).
  std::array<std::array<double, 3>, 3> xx_{};
  std::array<double, 3> xt_{};
};

}  // namespace troupe

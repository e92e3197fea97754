#include "troupe/engine/step_cost.hpp"

#include <algorithm>
#include <cmath>

namespace troupe {
namespace {

// Pairs are counted in thousands inside the fit, so that both columns are of similar size.
constexpr double pair_scale = 1000.0;

}  // namespace

int32_t max_tokens_within(int64_t start, double cost, double attention_cost) {
  if (cost < 1.0) return 0;
  if (attention_cost <= 0) return static_cast<int32_t>(std::min(cost, 2.0e9));
  // n + (n·start + n(n+1)/2) / r <= cost, a quadratic in n: n²/(2r) + n(1 + (start + 1/2)/r) - cost <= 0.
  const double r = attention_cost;
  const double a = 0.5 / r, b = 1.0 + (static_cast<double>(start) + 0.5) / r;
  double n = std::floor((-b + std::sqrt(b * b + 4.0 * a * cost)) / (2.0 * a));
  n = std::clamp(n, 0.0, 2.0e9);
  auto k = static_cast<int64_t>(n);
  // The rounding of the square root may leave it one off either way.
  while (k > 0 && step_cost(start, k, r) > cost) --k;
  while (step_cost(start, k + 1, r) <= cost) ++k;
  return static_cast<int32_t>(k);
}

double attention_cost_from_shape(const model_config& c, double attention_efficiency) {
  const double dim = c.embedding_dim;
  const double per_layer = dim * c.q_dim() * 2.0 + dim * c.kv_dim() * 2.0 + 3.0 * dim * c.ffn_dim;
  const double matmul = per_layer * c.num_layers + dim * c.vocab_size;
  // Per pair and layer: q·k and p·v over every query head.
  const double attention = 2.0 * c.num_layers * c.q_dim();
  if (attention <= 0 || matmul <= 0) return 0.0;
  return matmul / attention * std::clamp(attention_efficiency, 1e-3, 1.0);
}

step_cost_model::step_cost_model(double prior_attention_cost, double forgetting)
    : prior_(prior_attention_cost), forgetting_(forgetting), attention_cost_(prior_attention_cost) {}

void step_cost_model::observe(int64_t num_tokens, int64_t num_pairs, double seconds) {
  if (num_tokens <= 0 || !(seconds > 0) || !std::isfinite(seconds)) return;
  const std::array<double, 3> x{1.0, static_cast<double>(num_tokens), static_cast<double>(num_pairs) / pair_scale};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) xx_[i][j] = forgetting_ * xx_[i][j] + x[i] * x[j];
    xt_[i] = forgetting_ * xt_[i] + x[i] * seconds;
  }
  refit();
}

void step_cost_model::refit() {
  // Columns (1, tokens, pairs): eliminate in that order (xx is positive semi-definite, so no
  // pivoting). What is left of a column's diagonal after the columns before it are taken
  // out is the part of it they do not explain; the pairs column must keep 1% of its own, or
  // the steps seen (say, decodes at one context length) cannot tell pairs from tokens.
  auto m = xx_;
  auto v = xt_;
  constexpr std::array<double, 3> min_kept{1e-12, 1e-6, 1e-2};
  for (int col = 0; col < 3; ++col) {
    if (!(m[col][col] > min_kept[col] * xx_[col][col]) || !(xx_[col][col] > 0)) return;
    for (int row = col + 1; row < 3; ++row) {
      const double f = m[row][col] / m[col][col];
      for (int k = col; k < 3; ++k) m[row][k] -= f * m[col][k];
      v[row] -= f * v[col];
    }
  }
  std::array<double, 3> w{};
  for (int row = 2; row >= 0; --row) {
    double s = v[row];
    for (int k = row + 1; k < 3; ++k) s -= m[row][k] * w[k];
    w[row] = s / m[row][row];
  }
  const double per_token = w[1], per_pair = w[2] / pair_scale;
  if (!(per_token > 0) || !(per_pair > 0)) return;  // noise, not a cost: keep what we have
  // Far from the prior means a fit thrown off by a few odd steps more often than a machine
  // four times unlike the one the prior describes. And a fit from the first few long steps
  // is noisy: move a quarter of the way (in log space) per step, so that one odd step
  // cannot size the next chunk far off.
  double fitted = per_token / per_pair;
  if (prior_ > 0) fitted = std::clamp(fitted, prior_ / 4.0, prior_ * 4.0);
  attention_cost_ = attention_cost_ > 0 ? std::exp(0.75 * std::log(attention_cost_) + 0.25 * std::log(fitted)) : fitted;
  is_fitted_ = true;
}

}  // namespace troupe

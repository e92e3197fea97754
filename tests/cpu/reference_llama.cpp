#include "reference_llama.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "troupe/model/model_config.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::test {

namespace {

std::vector<float> dequantize(const gguf::file& file, const std::string& name) {
  const auto* t = file.find_tensor(name);
  std::vector<float> out(static_cast<size_t>(t->num_elements()));
  const auto bytes = row_bytes(t->type, t->dims[0]).value();
  for (int64_t r = 0; r < t->num_rows(); ++r) {
    dequantize_row(t->type, t->data + r * bytes, out.data() + r * t->dims[0], t->dims[0]);
  }
  return out;
}

// y[r] = sum_k w[r][k] x[k], w has rows of n.
std::vector<float> matvec(const std::vector<float>& w, const std::vector<float>& x) {
  const size_t n = x.size(), rows = w.size() / n;
  std::vector<float> y(rows);
  for (size_t r = 0; r < rows; ++r) {
    double acc = 0;
    for (size_t k = 0; k < n; ++k) acc += (double)w[r * n + k] * x[k];
    y[r] = (float)acc;
  }
  return y;
}

std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w, float eps) {
  double ss = 0;
  for (float v : x) ss += (double)v * v;
  const float scale = 1.0f / std::sqrt((float)(ss / x.size()) + eps);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * w[i];
  return out;
}

void add(std::vector<float>& x, const std::vector<float>& bias) {
  for (size_t i = 0; i < x.size(); ++i) x[i] += bias[i];
}

// RMSNorm of each head (weight.size() values) of x on its own.
void norm_heads(std::vector<float>& x, const std::vector<float>& weight, float eps) {
  const size_t hd = weight.size();
  for (size_t h = 0; h < x.size() / hd; ++h) {
    const std::vector<float> head(x.begin() + h * hd, x.begin() + (h + 1) * hd);
    const auto normed = rms_norm(head, weight, eps);
    std::copy(normed.begin(), normed.end(), x.begin() + h * hd);
  }
}

void rope(std::vector<float>& v, int heads, const model_config& c, int pos) {
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < c.rope_dim / 2; ++i) {
      const double factor = c.rope_freq_factors.empty() ? 1.0 : c.rope_freq_factors[i];
      const double theta = c.rope_freq_scale * pos * std::pow((double)c.rope_freq_base, -2.0 * i / c.rope_dim) / factor;
      const int a = h * c.head_dim + (c.rope == rope_kind::norm ? 2 * i : i);
      const int b = h * c.head_dim + (c.rope == rope_kind::norm ? 2 * i + 1 : i + c.rope_dim / 2);
      const double x0 = v[a], x1 = v[b];
      v[a] = (float)(x0 * std::cos(theta) - x1 * std::sin(theta));
      v[b] = (float)(x0 * std::sin(theta) + x1 * std::cos(theta));
    }
  }
}

}  // namespace

std::vector<float> reference_logits(const gguf::file& file, const std::vector<int32_t>& tokens) {
  const auto c = model_config::from_gguf(file);
  const int d = c.embedding_dim, hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
  const auto embd = dequantize(file, "token_embd.weight");
  const auto out_w = c.has_output_weight ? dequantize(file, "output.weight") : embd;
  const auto out_norm = dequantize(file, "output_norm.weight");
  struct layer { std::vector<float> an, fn, q, k, v, o, g, u, dn, bq, bk, bv, qn, kn; };
  std::vector<layer> layers;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    layers.push_back({dequantize(file, p + "attn_norm.weight"), dequantize(file, p + "ffn_norm.weight"),
                      dequantize(file, p + "attn_q.weight"), dequantize(file, p + "attn_k.weight"),
                      dequantize(file, p + "attn_v.weight"), dequantize(file, p + "attn_output.weight"),
                      dequantize(file, p + "ffn_gate.weight"), dequantize(file, p + "ffn_up.weight"),
                      dequantize(file, p + "ffn_down.weight")});
    if (c.has_qkv_bias) {
      layers.back().bq = dequantize(file, p + "attn_q.bias");
      layers.back().bk = dequantize(file, p + "attn_k.bias");
      layers.back().bv = dequantize(file, p + "attn_v.bias");
    }
    if (c.has_qk_norm) {
      layers.back().qn = dequantize(file, p + "attn_q_norm.weight");
      layers.back().kn = dequantize(file, p + "attn_k_norm.weight");
    }
  }
  std::vector<std::vector<std::vector<float>>> keys(c.num_layers), values(c.num_layers);
  std::vector<float> logits;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    std::vector<float> x(embd.begin() + (size_t)tokens[pos] * d, embd.begin() + (size_t)(tokens[pos] + 1) * d);
    for (int l = 0; l < c.num_layers; ++l) {
      const auto& w = layers[l];
      auto h = rms_norm(x, w.an, c.rms_eps);
      auto q = matvec(w.q, h), k = matvec(w.k, h), v = matvec(w.v, h);
      if (c.has_qkv_bias) {
        add(q, w.bq);
        add(k, w.bk);
        add(v, w.bv);
      }
      if (c.has_qk_norm) {
        norm_heads(q, w.qn, c.rms_eps);
        norm_heads(k, w.kn, c.rms_eps);
      }
      rope(q, c.num_heads, c, (int)pos);
      rope(k, c.num_kv_heads, c, (int)pos);
      keys[l].push_back(k);
      values[l].push_back(v);
      std::vector<float> attn(c.q_dim(), 0.0f);
      for (int head = 0; head < c.num_heads; ++head) {
        const int kvh = head / group;
        std::vector<double> scores(pos + 1);
        double max_score = -1e300;
        for (size_t j = 0; j <= pos; ++j) {
          double s = 0;
          for (int i = 0; i < hd; ++i) s += (double)q[head * hd + i] * keys[l][j][kvh * hd + i];
          scores[j] = s / std::sqrt((double)hd);
          max_score = std::max(max_score, scores[j]);
        }
        double sum = 0;
        for (auto& s : scores) sum += (s = std::exp(s - max_score));
        for (size_t j = 0; j <= pos; ++j) {
          for (int i = 0; i < hd; ++i) attn[head * hd + i] += (float)(scores[j] / sum * values[l][j][kvh * hd + i]);
        }
      }
      const auto o = matvec(w.o, attn);
      for (int i = 0; i < d; ++i) x[i] += o[i];
      h = rms_norm(x, w.fn, c.rms_eps);
      auto g = matvec(w.g, h);
      const auto u = matvec(w.u, h);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      const auto down = matvec(w.dn, g);
      for (int i = 0; i < d; ++i) x[i] += down[i];
    }
    const auto lg = matvec(out_w, rms_norm(x, out_norm, c.rms_eps));
    logits.insert(logits.end(), lg.begin(), lg.end());
  }
  return logits;
}

}  // namespace troupe::test

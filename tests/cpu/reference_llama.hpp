// A plain fp32 llama-family forward pass for tests (q/k/v biases, per-head q/k norms, NEOX
// or adjacent-pair RoPE, rope frequency factors): whole matrices dequantized, contiguous KV,
// no batching, no quantized activations. Slow and obviously correct; the CPU backend is
// checked against it.
#pragma once
#include <cstdint>
#include <vector>

#include "troupe/model/gguf.hpp"

namespace troupe::test {

// Logits of every position (tokens.size() x vocab) for one sequence from position 0.
std::vector<float> reference_logits(const gguf::file& file, const std::vector<int32_t>& tokens);

}  // namespace troupe::test

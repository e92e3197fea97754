// Sampling on the device: one thread block per sampled sequence. The raw logits give the
// log-softmax base and the top logprobs; a copy gets penalties, logit bias and the end-token
// bans of ignore_eos and min_tokens (one thread, the window is short), then the filters and
// the seeded draw run as bisections whose every probe is a block-wide reduction
// (gpu/math/sample_search.hpp, the same code the CPU test runs with a serial reducer). Only
// the token, its logprob and the requested top logprobs leave the device.
#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"
#include "troupe/gpu/math/sample_search.hpp"

namespace troupe::gpu::kernels {

namespace {

constexpr int sample_threads = 1024;

struct block_scratch {
  double d[33];
  unsigned long long u[33];
  long long i[33];
};

// The reducer sample_search.hpp's algorithms run against: each call is a pass over the
// vocabulary by the whole block.
struct block_reducer {
  const float* logits;
  int32_t vocab_size;
  block_scratch* scratch;

  __device__ uint64_t max_key() {
    unsigned long long best = 0;
    for (int32_t i = threadIdx.x; i < vocab_size; i += blockDim.x) {
      const unsigned long long k = rank_key(logits[i], i);
      best = k > best ? k : best;
    }
    return block_max(best, 0ull, scratch->u);
  }
  __device__ int64_t count_at_least(uint64_t key) {
    long long n = 0;
    for (int32_t i = threadIdx.x; i < vocab_size; i += blockDim.x) n += rank_key(logits[i], i) >= key ? 1 : 0;
    return block_sum(n, scratch->i);
  }
  __device__ double weight_at_least(uint64_t key, float max_logit, float inv_temperature) {
    double sum = 0.0;
    for (int32_t i = threadIdx.x; i < vocab_size; i += blockDim.x) {
      if (rank_key(logits[i], i) >= key) sum += tempered_weight(logits[i], max_logit, inv_temperature);
    }
    return block_sum(sum, scratch->d);
  }
  __device__ double kept_weight_before(int32_t end, const sample_filter& f) {
    double sum = 0.0;
    for (int32_t i = threadIdx.x; i < end; i += blockDim.x) sum += kept_weight(logits[i], i, f);
    return block_sum(sum, scratch->d);
  }
};

__global__ void sample_kernel(kernels::sample_inputs in, device_sample_out* outputs) {
  __shared__ block_scratch scratch;
  __shared__ int num_top;
  const device_sample& s = in.samples[blockIdx.x];
  const int64_t vocab = in.vocab_size;
  const float* raw = in.logits + (int64_t)(s.logit_index - in.first_index) * vocab;
  float* work = in.work + (int64_t)blockIdx.x * vocab;
  device_sample_out& out = outputs[blockIdx.x];

  block_reducer raw_reducer{raw, in.vocab_size, &scratch};
  const float log_sum_exp = raw_log_sum_exp(raw_reducer);
  if (threadIdx.x == 0) num_top = 0;
  __syncthreads();
  if (s.num_logprobs > 0) {
    const int64_t n = s.num_logprobs < in.vocab_size ? s.num_logprobs : in.vocab_size;
    const uint64_t boundary = kth_best_key(raw_reducer, n, raw_reducer.max_key());
    for (int32_t i = threadIdx.x; i < in.vocab_size; i += blockDim.x) {
      if (rank_key(raw[i], i) < boundary) continue;
      const int slot = atomicAdd(&num_top, 1);
      if (slot < max_device_logprobs) {
        out.top_tokens[slot] = i;
        out.top_logprobs[slot] = raw[i] - log_sum_exp;
      }
    }
  }
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) work[i] = raw[i];
  __syncthreads();
  if (threadIdx.x == 0) {
    apply_penalty_window(work, in.penalty_tokens + s.penalty_offset, s.num_penalty_tokens,
                         s.num_prompt_penalty_tokens, s.penalty_last_n, s.repetition_penalty, s.presence_penalty,
                         s.frequency_penalty);
    for (int32_t b = 0; b < s.num_bias; ++b) {
      work[in.bias_tokens[s.bias_offset + b]] += in.bias_values[s.bias_offset + b];
    }
    ban_end_tokens(work, in.eog_ids, in.num_eog, in.stop_tokens + s.stop_offset, s.num_stop, s.ignore_eos != 0,
                   can_sample_end(s.sample_index, s.min_tokens));
  }
  __syncthreads();
  block_reducer reducer{work, in.vocab_size, &scratch};
  const int32_t token = sample_token(reducer, s.filter, in.vocab_size, sample_uniform(s.seed, s.sample_index));
  if (threadIdx.x == 0) {
    out.token = token;
    out.logprob = raw[token] - log_sum_exp;
    out.num_top = num_top < max_device_logprobs ? num_top : max_device_logprobs;
  }
}

}  // namespace

void sample(const sample_inputs& in, device_sample_out* out, cudaStream_t stream) {
  if (in.num_samples == 0) return;
  sample_kernel<<<in.num_samples, sample_threads, 0, stream>>>(in, out);
  check_launch("sample");
}

}  // namespace troupe::gpu::kernels

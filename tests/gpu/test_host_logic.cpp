// The CUDA backend's host-side logic, which needs no device: KV pool sizing, tensor-parallel
// sharding of weights, the stream/event order of a step (against a simulated two-stream
// device that runs the enqueued work in random legal interleavings), the reply collection
// of a tensor-parallel step, plan flattening, which steps replay a CUDA graph, and the
// no-device error.
#include <doctest/doctest.h>

#include <deque>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/gpu/decode_graphs.hpp"
#include "troupe/gpu/device_plan.hpp"
#include "troupe/gpu/kv_pool_sizing.hpp"
#include "troupe/engine/rank_replies.hpp"
#include "troupe/gpu/step_order.hpp"
#include "troupe/gpu/tensor_shard.hpp"
#include "troupe/model/error.hpp"
#include "util/quantize.hpp"

using namespace troupe;

TEST_CASE("kv pool: gpu_memory_utilization of the free memory, in whole blocks") {
  gpu::kv_pool_request r;
  r.total_bytes = 80LL << 30;
  r.free_bytes = 10LL << 30;
  r.gpu_memory_utilization = 0.5;
  r.bytes_per_block = 1 << 20;
  r.min_blocks = 100;
  const auto size = gpu::size_kv_pool(r);
  CHECK(size.num_blocks == 5 * 1024);
  CHECK(size.bytes == 5LL << 30);
  r.max_blocks = 300;
  CHECK(gpu::size_kv_pool(r).num_blocks == 300);
}

TEST_CASE("kv pool: too little memory is an error naming the knobs") {
  gpu::kv_pool_request r;
  r.total_bytes = 16LL << 30;
  r.free_bytes = 100LL << 20;
  r.bytes_per_block = 1 << 20;
  r.min_blocks = 512;
  try {
    gpu::size_kv_pool(r);
    FAIL("expected an error");
  } catch (const error& e) {
    CHECK(e.code() == error_code::context_overflow);
    const std::string m = e.what();
    CHECK(m.find("--max-model-len") != std::string::npos);
    CHECK(m.find("--gpu-memory-utilization") != std::string::npos);
  }
  r.free_bytes = 1LL << 40;
  r.gpu_memory_utilization = 1.5;
  CHECK_THROWS_AS(gpu::size_kv_pool(r), error);
}

TEST_CASE("tensor parallel: q/k/v and gate/up split by rows, attn_output and ffn_down by columns") {
  CHECK(gpu::shard_kind_of("blk.0.attn_q.weight") == gpu::shard_kind::rows);
  CHECK(gpu::shard_kind_of("blk.11.ffn_up.weight") == gpu::shard_kind::rows);
  CHECK(gpu::shard_kind_of("blk.3.attn_output.weight") == gpu::shard_kind::columns);
  CHECK(gpu::shard_kind_of("blk.3.ffn_down.weight") == gpu::shard_kind::columns);
  CHECK(gpu::shard_kind_of("blk.3.attn_norm.weight") == gpu::shard_kind::replicated);
  CHECK(gpu::shard_kind_of("token_embd.weight") == gpu::shard_kind::replicated);
  CHECK(gpu::shard_kind_of("output.weight") == gpu::shard_kind::replicated);
}

TEST_CASE("tensor parallel: each rank's shard dequantizes to its slice of the whole matrix") {
  const int64_t rows = 8, cols = 512;
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  std::vector<float> values(rows * cols);
  for (auto& v : values) v = dist(rng);
  for (auto type : {ggml_type::q4_1, ggml_type::q8_0, ggml_type::q4_k, ggml_type::f16}) {
    const auto bytes = test::quantize(type, values);
    std::vector<float> whole(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(type, bytes.data() + r * *row_bytes(type, cols), &whole[r * cols], cols);
    }
    for (auto kind : {gpu::shard_kind::rows, gpu::shard_kind::columns}) {
      for (int32_t rank = 0; rank < 2; ++rank) {
        const auto s = gpu::shard_of(kind, rows, cols, rank, 2, 2, type);
        const auto shard = gpu::extract_shard(type, bytes.data(), rows, cols, s);
        for (int64_t r = 0; r < s.num_rows(); ++r) {
          std::vector<float> got(s.num_cols());
          dequantize_row(type, shard.data() + r * *row_bytes(type, s.num_cols()), got.data(), s.num_cols());
          const std::vector<float> want(&whole[(s.row_begin + r) * cols + s.col_begin],
                                        &whole[(s.row_begin + r) * cols + s.col_end]);
          CHECK(got == want);
        }
      }
    }
  }
}

TEST_CASE("tensor parallel: splits that cut a head or a quantization block are refused") {
  CHECK_THROWS_AS(gpu::shard_of(gpu::shard_kind::rows, 6 * 64, 64, 0, 4, 64, ggml_type::f32), error);
  CHECK_THROWS_AS(gpu::shard_of(gpu::shard_kind::columns, 8, 256 + 128, 0, 2, 1, ggml_type::q4_k), error);
  model_config c;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.ffn_dim = 1536;
  CHECK(gpu::rank_dims_of(c, 3).num_heads == 3);
  CHECK(gpu::rank_dims_of(c, 3).num_kv_heads == 1);
  CHECK_THROWS_AS(gpu::rank_dims_of(c, 2), error);
}

namespace {

// Two in-order streams whose work a test runs in a random order that respects each stream's
// order and the event waits: what a GPU may legally do with what step_order enqueued.
class simulated_device final : public gpu::device_ops {
 public:
  std::vector<int> device_blocks = std::vector<int>(16, 0);
  std::vector<int> host_blocks = std::vector<int>(8, 0);

  void swap_block_out(int32_t d, int32_t h) override {
    push(gpu::stream_kind::copy, [=, this] { host_blocks[h] = device_blocks[d]; });
  }
  void swap_block_in(int32_t h, int32_t d) override {
    push(gpu::stream_kind::copy, [=, this] { device_blocks[d] = host_blocks[h]; });
  }
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override {
    for (auto [s, d] : pairs) push(gpu::stream_kind::compute, [=, this] { device_blocks[d] = device_blocks[s]; });
  }
  void record(gpu::stream_kind s, gpu::event_kind e) override {
    const int n = ++recorded_[e];
    queue(s).push_back({[=, this] { done_[e] = n; }, {}, 0});
  }
  void wait(gpu::stream_kind s, gpu::event_kind e) override {
    queue(s).push_back({nullptr, e, recorded_[e]});
  }
  // A forward pass: reads and writes KV blocks on the compute stream.
  void compute(std::function<void()> fn) { push(gpu::stream_kind::compute, std::move(fn)); }

  // Runs everything enqueued in a random legal order; false on a deadlock.
  bool run(std::mt19937& rng) {
    while (!compute_.empty() || !copy_.empty()) {
      std::vector<std::deque<op>*> ready;
      for (auto* q : {&compute_, &copy_}) {
        if (!q->empty() && (q->front().fn || done_[q->front().event] >= q->front().needed)) ready.push_back(q);
      }
      if (ready.empty()) return false;
      auto* q = ready[rng() % ready.size()];
      if (q->front().fn) q->front().fn();
      q->pop_front();
    }
    return true;
  }

 private:
  struct op {
    std::function<void()> fn;  // null: a wait
    gpu::event_kind event;
    int needed;
  };
  std::deque<op>& queue(gpu::stream_kind s) { return s == gpu::stream_kind::compute ? compute_ : copy_; }
  void push(gpu::stream_kind s, std::function<void()> fn) { queue(s).push_back({std::move(fn), {}, 0}); }

  std::deque<op> compute_, copy_;
  std::map<gpu::event_kind, int> recorded_, done_;
};

}  // namespace

TEST_CASE("step order: swaps, copies and compute give the sequential result in every legal interleaving") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    simulated_device dev;
    gpu::step_order order(dev);
    int read_back = -1, forked = -1;
    // Step 1 writes blocks 0..3.
    order.before_compute();
    dev.compute([&] { for (int b = 0; b < 4; ++b) dev.device_blocks[b] = b + 1; });
    order.after_compute();
    // Between steps: preempt blocks 0 and 1 to host 0 and 1, fork block 2 into 5, bring
    // host block 0 back into block 6; then step 2 reuses block 0 and reads 5 and 6.
    order.swap_out({{0, 0}, {1, 1}});
    order.copy_blocks({{2, 5}});
    order.swap_in({{0, 6}});
    order.before_compute();
    dev.compute([&] {
      dev.device_blocks[0] = 100;
      read_back = dev.device_blocks[6];
      forked = dev.device_blocks[5];
    });
    order.after_compute();
    // Step 3's swap-out must see step 2's write.
    order.swap_out({{0, 2}});
    REQUIRE(dev.run(rng));
    CHECK(dev.host_blocks[0] == 1);
    CHECK(dev.host_blocks[1] == 2);
    CHECK(dev.host_blocks[2] == 100);
    CHECK(read_back == 1);
    CHECK(forked == 3);
  }
}

TEST_CASE("step order: a step without swaps or copies waits on nothing") {
  struct counting : gpu::device_ops {
    int waits = 0, records = 0;
    void swap_block_out(int32_t, int32_t) override {}
    void swap_block_in(int32_t, int32_t) override {}
    void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>&) override {}
    void record(gpu::stream_kind, gpu::event_kind) override { ++records; }
    void wait(gpu::stream_kind, gpu::event_kind) override { ++waits; }
  } dev;
  gpu::step_order order(dev);
  for (int i = 0; i < 3; ++i) {
    order.before_compute();
    order.after_compute();
  }
  CHECK(dev.waits == 0);
  CHECK(dev.records == 3);
}

TEST_CASE("worker group replies: rank 0's result once every rank answered") {
  rank_replies c(3);
  const auto id = c.begin();
  step_result r0;
  r0.outputs.push_back({7, 42});
  CHECK_FALSE(c.on_result(id, 2, step_result{}));
  CHECK_FALSE(c.on_result(id, 0, r0));
  CHECK(c.is_busy());
  const auto done = c.on_result(id, 1, step_result{});
  REQUIRE(done);
  REQUIRE(done->result);
  CHECK(*done->result == r0);
  CHECK_FALSE(c.is_busy());
}

TEST_CASE("worker group replies: a failed rank fails the step after all answered, naming the rank and its code") {
  rank_replies c(2);
  const auto id = c.begin();
  CHECK_FALSE(c.on_error(id, 1, error_code::out_of_memory, "out of memory"));
  const auto done = c.on_result(id, 0, step_result{});
  REQUIRE(done);
  CHECK_FALSE(done->result);
  CHECK(done->code == error_code::out_of_memory);
  CHECK(done->error == "rank 1: out of memory");
  const auto next = c.begin();
  CHECK_THROWS_AS(c.on_result(id, 0, step_result{}), error);  // a stale step id
  CHECK_FALSE(c.on_result(next, 0, step_result{}));
  CHECK_THROWS_AS(c.on_result(next, 0, step_result{}), error);  // twice from one rank
  CHECK_THROWS_AS(c.begin(), error);                            // one step in flight at a time
}

TEST_CASE("device plan: rows, block tables, logit rows and sample records of a mixed plan") {
  model_config c;
  c.vocab_size = 100;
  c.context_length = 64;
  batch_plan plan;
  sequence_step prefill;
  prefill.seq_id = 1;
  prefill.tokens = {5, 6, 7};
  prefill.block_table = {4, 9};
  prefill.params.temperature = 0.0f;
  prefill.penalty_tokens = {5, 6};
  sequence_step decode;
  decode.seq_id = 2;
  decode.tokens = {8};
  decode.start_pos = 20;
  decode.block_table = {1, 2, 3};
  decode.wants_all_logits = true;
  decode.params.logit_bias = {{3, 1.5f}};
  plan.sequences = {prefill, decode};
  const auto flat = gpu::flatten_plan(plan, c, 16, 10);
  CHECK(flat.tokens == std::vector<int32_t>{5, 6, 7, 8});
  CHECK(flat.positions == std::vector<int32_t>{0, 1, 2, 20});
  CHECK(flat.block_tables == std::vector<int32_t>{4, 1, 2});  // cut to the blocks touched
  CHECK(flat.row_table == std::vector<int32_t>{0, 0, 0, 1});
  CHECK(flat.logit_rows == std::vector<int32_t>{2, 3});
  REQUIRE(flat.samples.size() == 2);
  CHECK(flat.samples[1].logit_index == 1);
  CHECK(flat.samples[1].num_bias == 1);
  CHECK(flat.samples[0].num_penalty_tokens == 2);

  std::vector<gpu::device_sample_out> sampled(2);
  sampled[0].token = 11;
  sampled[1].token = 12;
  sampled[1].num_top = 2;
  sampled[1].top_tokens[0] = 40;
  sampled[1].top_logprobs[0] = -2.0f;
  sampled[1].top_tokens[1] = 30;
  sampled[1].top_logprobs[1] = -1.0f;
  std::vector<float> logits(2 * 100, 0.5f);
  const auto result = gpu::assemble_result(plan, flat, sampled, logits, 100);
  CHECK(result.outputs[0].token == 11);
  CHECK(result.outputs[0].logits.empty());
  CHECK(result.outputs[1].token == 12);
  CHECK(result.outputs[1].logits.size() == 100);
  REQUIRE(result.outputs[1].top_logprobs.size() == 2);
  CHECK(result.outputs[1].top_logprobs[0].token == 30);  // best first
}

TEST_CASE("device plan: stop token ids go to the device only for sequences short of min_tokens") {
  model_config c;
  c.vocab_size = 100;
  c.context_length = 64;
  batch_plan plan;
  for (uint64_t id : {1, 2, 3}) {
    sequence_step s;
    s.seq_id = id;
    s.tokens = {5};
    s.start_pos = 10;
    s.block_table = {0};
    s.params.stop_token_ids = {7, 8};
    s.params.min_tokens = id == 3 ? 0 : 4;
    s.sample_index = id == 1 ? 3 : 4;  // 1: one short of min_tokens; 2: there; 3: no min_tokens
    plan.sequences.push_back(s);
  }
  const auto flat = gpu::flatten_plan(plan, c, 16, 10);
  CHECK(flat.stop_tokens == std::vector<int32_t>{7, 8});
  REQUIRE(flat.samples.size() == 3);
  CHECK(flat.samples[0].num_stop == 2);
  CHECK(flat.samples[0].min_tokens == 4);
  CHECK(flat.samples[0].sample_index == 3);
  CHECK(flat.samples[1].num_stop == 0);
  CHECK(flat.samples[2].num_stop == 0);
  plan.sequences[0].params.stop_token_ids = {100};
  CHECK_THROWS_AS(gpu::flatten_plan(plan, c, 16, 10), error);
}

TEST_CASE("device plan: malformed plans are refused before anything reaches the device") {
  model_config c;
  c.vocab_size = 100;
  c.context_length = 64;
  sequence_step s;
  s.seq_id = 1;
  s.tokens = {5};
  s.block_table = {0};
  const auto refused = [&](sequence_step bad) {
    batch_plan p;
    p.sequences = {bad};
    CHECK_THROWS_AS(gpu::flatten_plan(p, c, 16, 4), error);
  };
  auto bad = s;
  bad.tokens = {100};
  refused(bad);
  bad = s;
  bad.block_table = {4};
  refused(bad);
  bad = s;
  bad.start_pos = 64;
  refused(bad);
  bad = s;
  bad.penalty_tokens = {-1};
  refused(bad);
  bad = s;
  bad.params.logit_bias = {{100, 1.0f}};
  refused(bad);
  batch_plan twice;
  twice.sequences = {s, s};
  CHECK_THROWS_AS(gpu::flatten_plan(twice, c, 16, 4), error);
}

TEST_CASE("cuda backend: without CUDA or without a device, asking for it is a clear error") {
  if (gpu::built_with_cuda() && gpu::num_cuda_devices() > 0) return;  // a GPU machine: run.sh covers it
  try {
    gpu::make_cuda_backends(nullptr, {});
    FAIL("expected an error");
  } catch (const error& e) {
    CHECK(e.code() == error_code::unsupported);
    const std::string m = e.what();
    CHECK(m.find(gpu::built_with_cuda() ? "no CUDA device" : "built without CUDA") != std::string::npos);
  }
}

namespace {

batch_plan decode_plan(int batch) {
  batch_plan p;
  for (int i = 0; i < batch; ++i) {
    sequence_step s;
    s.seq_id = (uint64_t)i;
    s.tokens = {1};
    s.start_pos = 5;
    s.block_table = {0};
    p.sequences.push_back(s);
  }
  return p;
}

}  // namespace

TEST_CASE("cuda graphs: a batch size is captured once it is steady, then replayed") {
  gpu::decode_graph_policy steady(256, 8, 3);
  const gpu::decode_graph_policy::buffer_addresses none{};
  using act = gpu::decode_graph_policy::action;
  CHECK(steady.decide(decode_plan(7), none).what == act::eager);  // a draining batch: 7, 6, 5 once each
  CHECK(steady.decide(decode_plan(6), none).what == act::eager);
  CHECK(steady.decide(decode_plan(5), none).what == act::eager);
  CHECK(steady.decide(decode_plan(5), none).what == act::eager);
  CHECK(steady.decide(decode_plan(5), none).what == act::capture);  // third in a row
  CHECK(steady.decide(decode_plan(5), none).what == act::replay);
  auto prefill = decode_plan(2);
  prefill.sequences[0].tokens = {1, 2, 3};
  CHECK(steady.decide(prefill, none).what == act::eager);
  CHECK(steady.decide(decode_plan(5), none).what == act::replay);  // captured sizes replay at once
  CHECK(steady.decide(decode_plan(6), none).what == act::eager);
  CHECK(steady.num_graphs() == 1);
}

TEST_CASE("cuda graphs: decode batches are captured once per size and replayed after") {
  gpu::decode_graph_policy policy(256, 8, 1);
  const gpu::decode_graph_policy::buffer_addresses buffers{};
  using action = gpu::decode_graph_policy::action;
  CHECK(policy.decide(decode_plan(4), buffers).what == action::capture);
  CHECK(policy.decide(decode_plan(4), buffers).what == action::replay);
  CHECK(policy.decide(decode_plan(5), buffers).what == action::capture);
  CHECK(policy.decide(decode_plan(257), buffers).what == action::eager);
  auto prefill = decode_plan(2);
  prefill.sequences[0].tokens = {1, 2, 3};
  CHECK(policy.decide(prefill, buffers).what == action::eager);
  auto scoring = decode_plan(4);
  scoring.sequences[1].wants_all_logits = true;
  CHECK(policy.decide(scoring, buffers).what == action::eager);
  CHECK(policy.num_graphs() == 2);
}

TEST_CASE("cuda graphs: a moved input buffer drops every graph and recaptures") {
  gpu::decode_graph_policy policy(256, 8, 1);
  gpu::decode_graph_policy::buffer_addresses buffers{};
  using action = gpu::decode_graph_policy::action;
  CHECK(policy.decide(decode_plan(4), buffers).what == action::capture);
  CHECK(policy.decide(decode_plan(8), buffers).what == action::capture);
  int grown = 0;
  buffers[3] = &grown;  // the block tables were reallocated
  const auto d = policy.decide(decode_plan(4), buffers);
  CHECK(d.drop_all);
  CHECK(d.what == action::capture);
  CHECK(policy.decide(decode_plan(8), buffers).what == action::capture);
  CHECK(policy.decide(decode_plan(8), buffers).what == action::replay);
}

TEST_CASE("cuda graphs: beyond the graph budget steps run eagerly, and off means never") {
  gpu::decode_graph_policy policy(256, 1, 1);
  const gpu::decode_graph_policy::buffer_addresses buffers{};
  using action = gpu::decode_graph_policy::action;
  CHECK(policy.decide(decode_plan(1), buffers).what == action::capture);
  CHECK(policy.decide(decode_plan(2), buffers).what == action::eager);
  gpu::decode_graph_policy off(0, 256);
  CHECK(off.decide(decode_plan(1), buffers).what == action::eager);
}

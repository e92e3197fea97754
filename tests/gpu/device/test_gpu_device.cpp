// The CUDA backend on a GPU, against llama.cpp's goldens for the default model
// (tests/data/make_golden_logits.py): the same procedures and thresholds as the CPU
// backend's tests in tests/cpu/test_llama_cpp_agreement.cpp. Built beside test_gpu but not
// registered with ctest (CI has no GPU): tests/gpu/device_check.sh and tests/gpu/run.sh run
// it. Without a CUDA device every case fails saying so; it never skips.
//   TROUPE_GPU_TEST_MODEL overrides the model path (default: TROUPE_TEST_MODEL).
#include <doctest/doctest.h>
#include <simdjson.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "cpu/llama_cpp_goldens.hpp"
#include "troupe/engine/single_sequence.hpp"
#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/model/tokenizer.hpp"

using namespace troupe;

namespace {

struct gpu_model {
  std::shared_ptr<const gguf::file> file;
  std::shared_ptr<backend> cuda;
  std::vector<int32_t> eog_ids;
};

gpu_model* model() {
  static const std::unique_ptr<gpu_model> m = [] {
    const char* env = std::getenv("TROUPE_GPU_TEST_MODEL");
    const std::string path = env != nullptr ? env : TROUPE_TEST_MODEL;
    std::unique_ptr<gpu_model> r;
    if (!std::filesystem::exists(path) || gpu::num_cuda_devices() == 0) return r;
    r = std::make_unique<gpu_model>();
    r->file = std::make_shared<const gguf::file>(gguf::file::open(path));
    r->eog_ids = tokenizer::from_gguf(*r->file).eog_ids();
    gpu::cuda_backend_options o;
    o.num_blocks = 16 * 72;
    o.max_model_len = 2048;
    o.eog_ids = r->eog_ids;
    r->cuda = gpu::make_cuda_backend(r->file, o);
    return r;
  }();
  return m.get();
}

simdjson::dom::element load_json(simdjson::dom::parser& parser, const std::string& name) {
  return parser.load(std::string(TROUPE_TEST_DATA_DIR) + "/" + name);
}

#define REQUIRE_GPU_MODEL()                                                                          \
  INFO("needs a CUDA device (found " << gpu::num_cuda_devices() << ") and the default model at "   \
                                     << TROUPE_TEST_MODEL << " or $TROUPE_GPU_TEST_MODEL");          \
  REQUIRE(model() != nullptr)

}  // namespace

TEST_CASE("cuda vs llama.cpp: teacher-forced top-1 agrees as well as llama.cpp agrees with itself") {
  REQUIRE_GPU_MODEL();
  simdjson::dom::parser parser, self_parser;
  const auto golden = load_json(parser, "golden_teacher_forced.json");
  const auto self = load_json(self_parser, "golden_self_agreement.json");
  single_sequence seq(*model()->cuda, model()->eog_ids);
  test::check_teacher_forced_bar(seq, model()->cuda->config().vocab_size, golden, self);
}

TEST_CASE("cuda vs llama.cpp: perplexity of the first 1024 tokens of GPL-3 is within 1%") {
  REQUIRE_GPU_MODEL();
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_ppl_gpl3.json");
  single_sequence seq(*model()->cuda, model()->eog_ids);
  test::check_perplexity_bar(seq, model()->cuda->config().vocab_size, golden);
}

TEST_CASE("cuda vs llama.cpp: greedy continuations match up to llama.cpp's first near-tie") {
  REQUIRE_GPU_MODEL();
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_greedy.json");
  single_sequence seq(*model()->cuda, model()->eog_ids);
  CHECK(test::check_greedy_continuations(seq, golden) >= 5);
}

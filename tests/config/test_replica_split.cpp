// --replicas N: how one machine is split between N in-process engine replicas.
#include <doctest/doctest.h>

#include "troupe/embed/replica_split.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

TEST_CASE("replica split: the CPU's threads are shared out, the remainder to the first replicas") {
  config c;
  c.device = "cpu";
  auto out = split_for_replicas(c, 3, 0, 8);
  REQUIRE(out.size() == 3);
  CHECK(out[0].threads == 3);
  CHECK(out[1].threads == 3);
  CHECK(out[2].threads == 2);
  c.threads = 4;
  out = split_for_replicas(c, 2, 4, 64);  // --threads wins over the core count; cpu ignores GPUs
  CHECK(out[0].threads == 2);
  CHECK(out[1].threads == 2);
  CHECK(out[0].devices.empty());
  CHECK_THROWS_WITH_AS(split_for_replicas(c, 5, 0, 64), doctest::Contains("--replicas 5 on the CPU"), error);
}

TEST_CASE("replica split: auto without a device (or with a quantized KV cache) is the CPU") {
  config c;
  auto out = split_for_replicas(c, 2, 0, 2);
  CHECK(out[0].threads == 1);
  CHECK(out[1].threads == 1);
  CHECK(out[0].device == "auto");
  c.kv_cache_dtype = "q8_0";
  out = split_for_replicas(c, 2, 2, 2);
  CHECK(out[1].devices.empty());
  CHECK(out[1].threads == 1);
}

TEST_CASE("replica split: CUDA replicas get consecutive devices, tensor-parallel groups together") {
  config c;
  auto out = split_for_replicas(c, 2, 2, 16);
  CHECK(out[0].device == "cuda");
  CHECK(out[0].devices == "0");
  CHECK(out[1].devices == "1");
  c.tensor_parallel = 2;
  out = split_for_replicas(c, 2, 4, 16);
  CHECK(out[0].devices == "0,1");
  CHECK(out[1].devices == "2,3");
  c.devices = "3,2,1,0";
  out = split_for_replicas(c, 2, 4, 16);
  CHECK(out[0].devices == "3,2");
  CHECK(out[1].devices == "1,0");
  CHECK_THROWS_WITH_AS(split_for_replicas(c, 3, 4, 16), doctest::Contains("needs 6 CUDA devices; 4 given"), error);
  c.devices = "0,x";
  CHECK_THROWS_AS(split_for_replicas(c, 1, 4, 16), error);
  c.devices.clear();
  c.tensor_parallel = 1;
  CHECK_THROWS_WITH_AS(split_for_replicas(c, 3, 2, 16), doctest::Contains("needs 3 CUDA devices; 2 visible"), error);
}

TEST_CASE("replica split: the count is bounded") {
  config c;
  c.device = "cpu";
  CHECK_THROWS_AS(split_for_replicas(c, 0, 0, 8), error);
  CHECK_THROWS_AS(split_for_replicas(c, 65, 0, 128), error);
  CHECK(split_for_replicas(c, 1, 0, 8).front().threads == 8);
}

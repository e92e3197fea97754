// The load driver's watch for a wrong server: the first failure is reported once with its
// message; a run of failures of any kind stops the run; busy refusals are not failures of
// the server; a success resets the run.
#include <doctest/doctest.h>

#include "failure_watch.hpp"

using namespace troupe::load;

namespace {

request_record failed(const std::string& reason, const std::string& detail = {}) {
  request_record r;
  r.result = outcome::failed;
  r.failure_reason = reason;
  r.failure_detail = detail;
  return r;
}

request_record ok() {
  request_record r;
  r.result = outcome::ok;
  return r;
}

}  // namespace

TEST_CASE("failure watch: the first failure is reported with its reason and message, once") {
  failure_watch w(4);
  CHECK(w.on_result(ok()).empty());
  CHECK(w.on_result(failed("http_404", "not found")) == "first failure: http_404: not found");
  CHECK(w.on_result(failed("http_404", "not found")).empty());
}

TEST_CASE("failure watch: a run of failures of any kind stops the run; a success resets it") {
  failure_watch w(3);
  w.on_result(failed("http_404"));
  w.on_result(failed("protocol"));
  CHECK_FALSE(w.should_stop());
  w.on_result(ok());
  w.on_result(failed("connection"));
  w.on_result(failed("http_400"));
  CHECK_FALSE(w.should_stop());
  w.on_result(failed("timeout"));
  CHECK(w.should_stop());
  CHECK(w.last_reason() == "timeout");
}

TEST_CASE("failure watch: busy refusals (429, queue_full, 503) neither count nor reset") {
  failure_watch w(2);
  w.on_result(failed("http_404"));
  for (int i = 0; i < 100; ++i) w.on_result(failed(i % 2 ? "http_429" : "error_queue_full"));
  CHECK_FALSE(w.should_stop());
  w.on_result(failed("http_503"));
  w.on_result(failed("http_404"));
  CHECK(w.should_stop());
}

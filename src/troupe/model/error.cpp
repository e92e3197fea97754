#include "troupe/model/error.hpp"

namespace troupe {

const char* to_string(error_code code) {
  switch (code) {
    case error_code::invalid_argument: return "invalid_argument";
    case error_code::invalid_model: return "invalid_model";
    case error_code::io_error: return "io_error";
    case error_code::unsupported: return "unsupported";
    case error_code::context_overflow: return "context_overflow";
    case error_code::bad_plan: return "bad_plan";
    case error_code::out_of_memory: return "out_of_memory";
    case error_code::step_timeout: return "step_timeout";
    case error_code::internal: return "internal";
  }
  return "unknown";
}

}  // namespace troupe

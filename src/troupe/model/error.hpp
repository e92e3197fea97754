// The one error type that crosses layer boundaries: a code to branch on and a message for people.
#pragma once
#include <stdexcept>
#include <string>

namespace troupe {

enum class error_code {
  invalid_argument,   // a value from the caller is out of range or malformed
  invalid_model,      // the model file is truncated, corrupt or unsupported
  io_error,           // the OS refused (open, mmap, read)
  unsupported,        // a well-formed request for something troupe does not do
  context_overflow,   // a sequence does not fit the context or the KV pool
  bad_plan,           // a batch_plan the backend cannot run (a block id out of range, ...)
  out_of_memory,      // the backend could not allocate what a step needs
  step_timeout,       // a step did not return within the scheduler's deadline (a stuck worker)
  internal,           // a bug: an invariant did not hold
};

const char* to_string(error_code code);

class error : public std::runtime_error {
 public:
  error(error_code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  error_code code() const { return code_; }

 private:
  error_code code_;
};

}  // namespace troupe

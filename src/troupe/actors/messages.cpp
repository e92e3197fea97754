#include "troupe/actors/messages.hpp"

namespace troupe {

namespace {

// The message troupe's errors carry as their context (empty for any other error).
std::string context_message(const caf::error& err) {
  return err.context().match_elements<std::string>() ? err.context().get_as<std::string>(0) : std::string();
}

}  // namespace

caf::error to_caf_error(error_code code, std::string message) {
  return caf::error(static_cast<uint8_t>(static_cast<uint8_t>(code) + 1), caf::atom("troupe"),
                    caf::make_message(std::move(message)));
}

caf::error to_caf_error(request_error_code code, std::string message) {
  return caf::error(static_cast<uint8_t>(static_cast<uint8_t>(code) + 1), caf::atom("request"),
                    caf::make_message(std::move(message)));
}

error_value error_value_of(const caf::error& err, const caf::actor_system& sys) {
  if (err.category() == caf::atom("troupe")) {
    return {static_cast<error_code>(err.code() - 1), context_message(err)};
  }
  if (err.category() == caf::atom("request")) {
    // A request-level refusal seen where an error_code is expected: keep the message.
    return {error_code::internal, context_message(err)};
  }
  return {error_code::internal, sys.render(err)};
}

error_event error_event_of(const caf::error& err, const caf::actor_system& sys) {
  if (err.category() == caf::atom("request")) {
    return {static_cast<request_error_code>(err.code() - 1), context_message(err)};
  }
  if (err.category() == caf::atom("troupe")) {
    const auto e = error_value_of(err, sys);
    return {request_code_of(e.code), e.message};
  }
  // The batcher or scheduler is gone (the engine stopped) or the message was lost.
  return {request_error_code::unavailable, sys.render(err)};
}

}  // namespace troupe

#include "troupe/actors/messages.hpp"

namespace troupe {

error_value error_value_of(const caf::error& err, const caf::actor_system& sys) {
  const std::string context = err.context().match_elements<std::string>() ? err.context().get_as<std::string>(0)
                                                                          : std::string();
  if (err.category() == caf::atom("troupe")) {
    return {static_cast<error_code>(err.code()), context};
  }
  if (err.category() == caf::atom("request")) {
    // A request-level refusal seen where an error_code is expected: keep the message.
    return {error_code::internal, context};
  }
  return {error_code::internal, sys.render(err)};
}

error_event error_event_of(const caf::error& err, const caf::actor_system& sys) {
  if (err.category() == caf::atom("request")) {
    const std::string context = err.context().match_elements<std::string>() ? err.context().get_as<std::string>(0)
                                                                            : std::string();
    return {static_cast<request_error_code>(err.code()), context};
  }
  if (err.category() == caf::atom("troupe")) {
    const auto e = error_value_of(err, sys);
    return {request_code_of(e.code), e.message};
  }
  // The batcher or scheduler is gone (the engine stopped) or the message was lost.
  return {request_error_code::unavailable, sys.render(err)};
}

}  // namespace troupe

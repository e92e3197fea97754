// http_session's /tokenize and /detokenize: the body is parsed on the I/O thread (linear in
// it, like a completion's), the tokenizer runs on an engine thread (its work grows with the
// text, as a completion's tokenizing in its request actor does), and the answer comes back
// to the session's strand.
#include <boost/asio/post.hpp>

#include <functional>

#include "troupe/actors/model_bundle.hpp"
#include "troupe/net/http_session.hpp"

namespace troupe::net {

namespace http = boost::beast::http;

void http_session::start_tokenizer_call(const request_type& req, std::string_view path) {
  auto& bridge = state_->bridge;
  const int32_t max_model_len = bridge.max_model_len();
  std::function<tokenizer_answer(const model_bundle&)> work;
  if (path == "/tokenize") {
    auto parsed = parse_tokenize_request(req.body());
    if (!parsed.value) return respond_error(*parsed.error);
    work = [r = std::move(*parsed.value), max_model_len](const model_bundle& m) {
      return answer_tokenize(r, m.tok, m.tmpl, max_model_len);
    };
  } else {
    auto parsed = parse_detokenize_request(req.body(), parse_limits{bridge.vocab_size(), max_model_len});
    if (!parsed.value) return respond_error(*parsed.error);
    work = [r = std::move(*parsed.value)](const model_bundle& m) { return answer_detokenize(r, m.tok); };
  }
  if (!bridge.is_ready()) {
    return respond_error(
        api_error{503, "unavailable", bridge.is_draining() ? "server is shutting down" : "server is not ready", ""});
  }
  // Nothing is read until the answer has been written; the timer holds the session until
  // then (the engine thread holds only a weak pointer, as a completion's sink does).
  stream_.expires_never();
  hold_.expires_at(boost::asio::steady_timer::time_point::max());
  hold_.async_wait([self = shared_from_this()](boost::beast::error_code) {});
  // The task holds nothing of the I/O side but the weak pointer and the gate: it may end
  // (and be destroyed) on the engine thread after the server and its io_context are gone,
  // so it must not own an executor (a strand's destructor reaches into its io_context).
  bridge.run_with_model([work = std::move(work), session = weak_from_this(), gate = state_->gate](const model_bundle& m) {
    tokenizer_answer answer = work(m);
    gate->if_open([&] {
      if (auto s = session.lock()) {
        const auto executor = s->stream_.get_executor();
        boost::asio::post(executor, [s, answer = std::move(answer)] { s->on_tokenizer_answer(answer); });
      }
    });
  });
}

void http_session::on_tokenizer_answer(const tokenizer_answer& answer) {
  if (is_closed_) return;
  if (answer.error) return respond_error(*answer.error);
  respond(http::status::ok, "application/json", answer.body);
}

}  // namespace troupe::net

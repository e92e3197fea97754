// openai_response: OpenAI's response objects and stream chunks from troupe's events, and the
// /v1/models list. Token text may be part of a UTF-8 character: json_writer replaces what is
// invalid by U+FFFD, and chat logprobs carry the raw bytes.
#include <algorithm>
#include <optional>

#include "troupe/engine/tool_calls.hpp"
#include "troupe/net/json_writer.hpp"
#include "troupe/net/openai_protocol.hpp"
#include "troupe/net/tool_call_parse.hpp"

namespace troupe::net {
namespace {

void write_usage(json_writer& w, const request_usage& u) {
  w.key("usage").begin_object();
  w.key("prompt_tokens").value(u.prompt_tokens);
  w.key("completion_tokens").value(u.completion_tokens);
  w.key("total_tokens").value(u.total_tokens());
  w.key("prompt_tokens_details").begin_object().key("cached_tokens").value(u.cached_prompt_tokens).end_object();
  w.end_object();
}

void write_bytes(json_writer& w, std::string_view text) {
  w.key("bytes").begin_array();
  for (char c : text) w.value(static_cast<int32_t>(static_cast<unsigned char>(c)));
  w.end_array();
}

void write_chat_entry(json_writer& w, const logprob_entry& e) {
  w.key("token").value(e.text);
  w.key("logprob").value(e.logprob);
  write_bytes(w, e.text);
}

std::string sse_event(const std::string& json) {
  std::string out;
  out.reserve(json.size() + 8);
  return out.append("data: ").append(json).append("\n\n");
}

constexpr std::string_view sse_done = "data: [DONE]\n\n";

}  // namespace

openai_response::openai_response(openai_endpoint ep, std::string id, std::string model, int64_t created_unix_s,
                                 const request& req)
    : endpoint_(ep),
      id_(std::move(id)),
      model_(std::move(model)),
      created_unix_s_(created_unix_s),
      wants_logprobs_(req.logprobs),
      wants_usage_chunk_(req.include_usage),
      offers_tools_(ep == openai_endpoint::chat_completions && req.offers_tools()),
      is_forced_call_(ep == openai_endpoint::chat_completions && constrains_tool_call(req)),
      first_text_offset_(req.echo ? static_cast<int64_t>(req.prompt.size()) : 0) {}

openai_response::choice_output& openai_response::output(int32_t index) {
  const auto i = static_cast<size_t>(std::max(0, index));
  while (outputs_.size() <= i) outputs_.push_back({first_text_offset_, {}, {}, {}});
  return outputs_[i];
}

void openai_response::write_head(json_writer& w, const char* object) const {
  w.key("id").value(id_);
  w.key("object").value(object);
  w.key("created").value(created_unix_s_);
  w.key("model").value(model_);
}

void openai_response::begin_chunk(json_writer& w, int32_t index) const {
  w.begin_object();
  write_head(w, endpoint_ == openai_endpoint::completions ? "text_completion" : "chat.completion.chunk");
  w.key("choices").begin_array().begin_object().key("index").value(index);
}

void openai_response::end_chunk(json_writer& w) const {
  w.end_object().end_array();
  // As OpenAI does: with include_usage every chunk has "usage", null until the last one.
  if (wants_usage_chunk_) w.key("usage").null();
  w.end_object();
}

// {"tokens":[...],"token_logprobs":[...],"top_logprobs":[{text: logprob}],"text_offset":[...]}
void openai_response::write_completion_logprobs(json_writer& w, const std::vector<token_logprobs>& logprobs,
                                                const std::vector<int64_t>& text_offsets) const {
  w.begin_object();
  w.key("tokens").begin_array();
  for (const token_logprobs& t : logprobs) w.value(t.sampled.text);
  w.end_array();
  w.key("token_logprobs").begin_array();
  for (const token_logprobs& t : logprobs) w.value(t.sampled.logprob);
  w.end_array();
  w.key("top_logprobs").begin_array();
  for (const token_logprobs& t : logprobs) {
    // Keyed by text, as the API has it: where two candidates read alike once written (the
    // same text, or both U+FFFD), the more likely one is kept.
    std::vector<std::string> written_keys;
    w.begin_object();
    for (const logprob_entry& alt : t.top) {
      std::string written;
      append_json_string(written, alt.text);
      if (std::find(written_keys.begin(), written_keys.end(), written) != written_keys.end()) continue;
      written_keys.push_back(std::move(written));
      w.key(alt.text).value(alt.logprob);
    }
    w.end_object();
  }
  w.end_array();
  w.key("text_offset").begin_array();
  for (int64_t offset : text_offsets) w.value(offset);
  w.end_array();
  w.end_object();
}

// {"content":[{"token","logprob","bytes","top_logprobs":[{"token","logprob","bytes"}]}]}
void openai_response::write_chat_logprobs(json_writer& w, const std::vector<token_logprobs>& logprobs) const {
  w.begin_object().key("content").begin_array();
  for (const token_logprobs& t : logprobs) {
    w.begin_object();
    write_chat_entry(w, t.sampled);
    w.key("top_logprobs").begin_array();
    for (const logprob_entry& alt : t.top) {
      w.begin_object();
      write_chat_entry(w, alt);
      w.end_object();
    }
    w.end_array().end_object();
  }
  w.end_array().end_object();
}

std::string openai_response::sse_start() {
  if (endpoint_ == openai_endpoint::completions) return {};
  // Every choice of a chat stream opens with its assistant role: choice 0 here, any other
  // on its first delta (sse_delta).
  json_writer w;
  begin_chunk(w, 0);
  w.key("delta").begin_object().key("role").value("assistant").key("content").value("").end_object();
  w.key("logprobs").null().key("finish_reason").null();
  end_chunk(w);
  output(0);
  return sse_event(w.take());
}

std::string openai_response::sse_delta(const delta_event& d) {
  if (offers_tools_) {
    // Content is shown only up to where a call may begin; calls come at the choice's end.
    const bool is_new_choice = static_cast<size_t>(d.index) >= outputs_.size();
    choice_output& out = output(d.index);
    out.tool_text += d.text;
    const size_t showable = is_forced_call_ ? 0 : showable_prefix(out.tool_text);
    std::string events;
    if (is_new_choice && d.index > 0) {
      json_writer w;
      begin_chunk(w, d.index);
      w.key("delta").begin_object().key("role").value("assistant").key("content").value("").end_object();
      w.key("logprobs").null().key("finish_reason").null();
      end_chunk(w);
      events = sse_event(w.take());
    }
    if (showable <= out.num_shown) return events;
    events.append(content_chunk(d.index, std::string_view(out.tool_text).substr(out.num_shown, showable - out.num_shown)));
    out.num_shown = showable;
    return events;
  }
  const bool has_logprobs = wants_logprobs_ && !d.logprobs.empty();
  if (d.text.empty() && !has_logprobs) return {};
  const bool is_new_choice = static_cast<size_t>(d.index) >= outputs_.size();
  choice_output& out = output(d.index);
  std::string opening;
  if (is_new_choice && d.index > 0 && endpoint_ == openai_endpoint::chat_completions) {
    json_writer w;
    begin_chunk(w, d.index);
    w.key("delta").begin_object().key("role").value("assistant").key("content").value("").end_object();
    w.key("logprobs").null().key("finish_reason").null();
    end_chunk(w);
    opening = sse_event(w.take());
  }
  std::vector<int64_t> text_offsets;
  for (const token_logprobs& t : d.logprobs) {
    text_offsets.push_back(out.next_text_offset);
    out.next_text_offset += static_cast<int64_t>(t.sampled.text.size());
  }
  json_writer w;
  begin_chunk(w, d.index);
  if (endpoint_ == openai_endpoint::completions) {
    w.key("text").value(d.text).key("logprobs");
    if (has_logprobs) {
      write_completion_logprobs(w, d.logprobs, text_offsets);
    } else {
      w.null();
    }
  } else {
    w.key("delta").begin_object().key("content").value(d.text).end_object().key("logprobs");
    if (has_logprobs) {
      write_chat_logprobs(w, d.logprobs);
    } else {
      w.null();
    }
  }
  w.key("finish_reason").null();
  end_chunk(w);
  return opening.append(sse_event(w.take()));
}

void openai_response::write_finish_chunk(json_writer& w, int32_t index, request_finish_reason reason) const {
  begin_chunk(w, index);
  if (endpoint_ == openai_endpoint::completions) {
    w.key("text").value("");
  } else {
    w.key("delta").begin_object().end_object();
  }
  w.key("logprobs").null().key("finish_reason").value(to_string(reason));
  end_chunk(w);
}

std::string openai_response::content_chunk(int32_t index, std::string_view text) const {
  json_writer w;
  begin_chunk(w, index);
  w.key("delta").begin_object().key("content").value(text).end_object();
  w.key("logprobs").null().key("finish_reason").null();
  end_chunk(w);
  return sse_event(w.take());
}

std::string openai_response::sse_choice_finish(const choice_done_event& d) {
  if (offers_tools_) return finish_with_tools(d.index, d.reason);
  json_writer w;
  write_finish_chunk(w, d.index, d.reason);
  return sse_event(w.take());
}

void openai_response::write_tool_calls(json_writer& w, const std::vector<parsed_tool_call>& calls,
                                       bool with_index) const {
  w.key("tool_calls").begin_array();
  for (size_t k = 0; k < calls.size(); ++k) {
    w.begin_object();
    if (with_index) w.key("index").value(static_cast<int64_t>(k));
    w.key("id").value(new_tool_call_id());
    w.key("type").value("function");
    w.key("function").begin_object().key("name").value(calls[k].name).key("arguments").value(calls[k].arguments).end_object();
    w.end_object();
  }
  w.end_array();
}

std::string openai_response::finish_with_tools(int32_t index, request_finish_reason reason) {
  choice_output& out = output(index);
  const parsed_answer answer = parse_tool_calls(out.tool_text);
  std::string events;
  // What is left of the content: all of the text when it made no call.
  const std::string& content = answer.calls.empty() ? out.tool_text : answer.content;
  if (content.size() > out.num_shown) events.append(content_chunk(index, std::string_view(content).substr(out.num_shown)));
  if (!answer.calls.empty()) {
    json_writer w;
    begin_chunk(w, index);
    w.key("delta").begin_object();
    write_tool_calls(w, answer.calls, true);
    w.end_object();
    w.key("logprobs").null().key("finish_reason").null();
    end_chunk(w);
    events.append(sse_event(w.take()));
  }
  json_writer w;
  begin_chunk(w, index);
  w.key("delta").begin_object().end_object();
  w.key("logprobs").null().key("finish_reason");
  if (!answer.calls.empty() && reason == request_finish_reason::stop) {
    w.value("tool_calls");
  } else {
    w.value(to_string(reason));
  }
  end_chunk(w);
  return events.append(sse_event(w.take()));
}

std::string openai_response::sse_finish(const done_event& d) {
  std::string out;
  if (d.choices.empty()) {
    if (offers_tools_) {
      out = finish_with_tools(0, d.reason);
    } else {
      json_writer w;
      write_finish_chunk(w, 0, d.reason);
      out = sse_event(w.take());
    }
  }
  if (wants_usage_chunk_) {
    json_writer usage;
    usage.begin_object();
    write_head(usage, endpoint_ == openai_endpoint::completions ? "text_completion" : "chat.completion.chunk");
    usage.key("choices").begin_array().end_array();
    write_usage(usage, d.usage);
    usage.end_object();
    out.append(sse_event(usage.take()));
  }
  return out.append(sse_done);
}

std::string openai_response::sse_error(const api_error& e) {
  return sse_event(openai_error_body(e)).append(sse_done);
}

void openai_response::add(const delta_event& d) {
  choice_output& out = output(d.index);
  out.text.append(d.text);
  if (!wants_logprobs_) return;
  for (const token_logprobs& t : d.logprobs) {
    out.text_offsets.push_back(out.next_text_offset);
    out.next_text_offset += static_cast<int64_t>(t.sampled.text.size());
    out.logprobs.push_back(t);
  }
}

std::string openai_response::body(const done_event& d) const {
  const bool is_chat = endpoint_ == openai_endpoint::chat_completions;
  json_writer w;
  w.begin_object();
  write_head(w, is_chat ? "chat.completion" : "text_completion");
  w.key("choices").begin_array();
  // One choice, or one per choice_done_event the done repeats (in index order).
  const auto num_choices = static_cast<int32_t>(std::max<size_t>(1, d.choices.size()));
  for (int32_t i = 0; i < num_choices; ++i) {
    const auto reason = d.choices.empty() ? d.reason : d.choices[static_cast<size_t>(i)].reason;
    static const choice_output no_output;
    const choice_output& out = static_cast<size_t>(i) < outputs_.size() ? outputs_[static_cast<size_t>(i)] : no_output;
    w.begin_object().key("index").value(i);
    std::optional<parsed_answer> answer;
    if (offers_tools_) answer = parse_tool_calls(out.text);
    if (answer && !answer->calls.empty()) {
      w.key("message").begin_object().key("role").value("assistant").key("content");
      if (answer->content.empty()) {
        w.null();
      } else {
        w.value(answer->content);
      }
      write_tool_calls(w, answer->calls, false);
      w.end_object();
    } else if (is_chat) {
      w.key("message").begin_object().key("role").value("assistant").key("content").value(out.text).end_object();
    } else {
      w.key("text").value(out.text);
    }
    w.key("logprobs");
    if (!wants_logprobs_) {
      w.null();
    } else if (is_chat) {
      write_chat_logprobs(w, out.logprobs);
    } else {
      write_completion_logprobs(w, out.logprobs, out.text_offsets);
    }
    const bool called = answer && !answer->calls.empty() && reason == request_finish_reason::stop;
    w.key("finish_reason").value(called ? "tool_calls" : to_string(reason));
    w.end_object();
  }
  w.end_array();
  write_usage(w, d.usage);
  w.end_object();
  return w.take();
}

std::string models_list_body(std::string_view model_id, int64_t created_unix_s, int32_t max_model_len) {
  json_writer w;
  w.begin_object().key("object").value("list").key("data").begin_array();
  w.begin_object();
  w.key("id").value(model_id);
  w.key("object").value("model");
  w.key("created").value(created_unix_s);
  w.key("owned_by").value("troupe");
  w.key("max_model_len").value(max_model_len);
  w.end_object();
  w.end_array().end_object();
  return w.take();
}

}  // namespace troupe::net

"""Tool calls with the official OpenAI client against `troupe serve` on the default model: a
round trip (the model calls a tool, the tool's result goes back as a `tool` message, the
model answers) whole and streamed; tool_choice required and a named function make a call
whose arguments follow the function's parameters schema; "none" and "auto" answer as the
model likes, well-formed either way; bad tool definitions are refused naming the field."""

import json

import openai

import troupe_server

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "maxLength": 24},
                                      "unit": {"enum": ["celsius", "fahrenheit"]}},
                       "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two integers",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"], "additionalProperties": False}}},
]


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def check_weather_call(call, where):
    check(call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_"),
          f"{where}: a get_weather call with an id ({call.id})")
    args = json.loads(call.function.arguments)
    check(set(args) == {"city", "unit"} and isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit"),
          f"{where}: its arguments follow the parameters schema: {args}")


def main():
    args = troupe_server.parse_args(__doc__)
    with troupe_server.start(args.troupe, args.model) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="none", max_retries=0, timeout=120)
        model = client.models.list().data[0].id
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]

        # Whole: call, tool result, answer.
        first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, tool_choice="required",
                                               max_tokens=80, temperature=0)
        choice = first.choices[0]
        check(choice.finish_reason == "tool_calls" and choice.message.content is None,
              "tool_choice required: finish_reason tool_calls, no content")
        check(len(choice.message.tool_calls) == 1, "one call")
        call = choice.message.tool_calls[0]
        if call.function.name == "get_weather":
            check_weather_call(call, "required")
        else:
            check(set(json.loads(call.function.arguments)) == {"a", "b"}, "required: an add call with a and b")
        history = messages + [choice.message.model_dump(exclude_none=True),
                              {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21})}]
        answer = client.chat.completions.create(model=model, messages=history, tools=TOOLS, max_tokens=40,
                                                temperature=0)
        check(answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason in
              ("stop", "length", "tool_calls"), "the tool's result goes back and the model answers")
        check(answer.usage.prompt_tokens > first.usage.prompt_tokens, "the answer's prompt holds the call and result")

        # Streamed: a named function.
        stream = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=80,
                                                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                                stream=True)
        calls, content, finish = {}, "", None
        for chunk in stream:
            for c in chunk.choices:
                content += c.delta.content or ""
                for tc in c.delta.tool_calls or []:
                    entry = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    entry["id"] = tc.id or entry["id"]
                    entry["name"] += tc.function.name or ""
                    entry["arguments"] += tc.function.arguments or ""
                if c.finish_reason is not None:
                    finish = c.finish_reason
        check(finish == "tool_calls" and content == "" and list(calls) == [0],
              "streamed, named: one tool_calls delta, finish_reason tool_calls")
        streamed_call = openai.types.chat.ChatCompletionMessageToolCall(
            id=calls[0]["id"], type="function",
            function={"name": calls[0]["name"], "arguments": calls[0]["arguments"]})
        check_weather_call(streamed_call, "streamed")
        history = messages + [{"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function",
             "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]}}]},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "21 degrees"}]
        text = ""
        for chunk in client.chat.completions.create(model=model, messages=history, tools=TOOLS, max_tokens=40,
                                                    stream=True, tool_choice="none"):
            for c in chunk.choices:
                text += c.delta.content or ""
        check(len(text) > 0, f"streamed round trip: the model answers from the result: {text[:60]!r}")

        for choice_mode in ("auto", "none"):
            r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi."}],
                                               tools=TOOLS, tool_choice=choice_mode, max_tokens=24)
            c = r.choices[0]
            check(c.finish_reason in ("stop", "length", "tool_calls") and
                  (c.message.content is not None or c.message.tool_calls),
                  f"tool_choice {choice_mode}: a well-formed answer ({c.finish_reason})")

        for bad, param in (({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"not": {}}}}],
                             "tool_choice": "required"}, "tools"),
                           ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
                            "tool_choice"),
                           ({"tool_choice": "required"}, "tool_choice")):
            try:
                client.chat.completions.create(model=model, messages=messages, max_tokens=8, **bad)
                check(False, f"{param} is refused")
            except openai.BadRequestError as e:
                check(e.status_code == 400 and param in str(e), f"a bad {param} is refused naming it")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Renders tool-use conversations with Qwen2.5-Coder-0.5B-Instruct's own chat template (the
Jinja text in its GGUF's tokenizer.chat_template, rendered by jinja2 the way Hugging Face
transformers does: tojson = json.dumps(ensure_ascii=False)), for
tests/model/test_chat_template.cpp to compare chat_template::apply_with_tools against.

Usage: tests/data/make_tool_template_golden.py MODEL.gguf > tests/data/qwen2.5-coder-0.5b/tool_template_golden.json
Needs: pip install gguf jinja2
"""
import json
import sys

import gguf
import jinja2

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Adds two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}


def call(name, arguments, call_id):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CASES = [
    {"tools": [WEATHER, ADD], "messages": [{"role": "user", "content": "Weather in Paris?"}]},
    {"tools": [WEATHER], "messages": [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            call("get_weather", {"city": "Paris", "unit": "celsius"}, "call_1"),
            call("get_weather", {"city": "Rome"}, "call_2")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\": 25}"}]},
    {"tools": [ADD], "messages": [
        {"role": "user", "content": "2 + 3?"},
        {"role": "assistant", "content": "Let me add.", "tool_calls": [call("add", {"a": 2, "b": 3}, "c")]},
        {"role": "tool", "tool_call_id": "c", "content": "5"},
        {"role": "assistant", "content": "It is 5."},
        {"role": "user", "content": "Thanks"}]},
    {"tools": [], "messages": [
        {"role": "user", "content": "2 + 3?"},
        {"role": "assistant", "content": "", "tool_calls": [call("add", {"a": 2, "b": 3}, "c")]},
        {"role": "tool", "tool_call_id": "c", "content": "5"}]},
]


def main():
    reader = gguf.GGUFReader(sys.argv[1])
    field = reader.fields["tokenizer.chat_template"]
    template_text = bytes(field.parts[field.data[0]]).decode()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x: json.dumps(x, ensure_ascii=False)
    template = env.from_string(template_text)
    out = {"chat_template": template_text, "cases": []}
    for case in CASES:
        rendered = template.render(messages=case["messages"], tools=case["tools"] or None, add_generation_prompt=True)
        # troupe's side: arguments and parameters as the JSON text a client sends.
        messages = []
        for m in case["messages"]:
            calls = [{"id": c["id"], "name": c["function"]["name"],
                      "arguments": json.dumps(c["function"]["arguments"], separators=(",", ":"))}
                     for c in m.get("tool_calls", [])]
            messages.append({"role": m["role"], "content": m["content"], "tool_calls": calls,
                             "tool_call_id": m.get("tool_call_id", "")})
        tools = [{"name": t["function"]["name"], "description": t["function"]["description"],
                  "parameters": json.dumps(t["function"]["parameters"], separators=(",", ":"))}
                 for t in case["tools"]]
        out["cases"].append({"messages": messages, "tools": tools, "rendered": rendered})
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

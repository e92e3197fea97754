"""POST /tokenize and /detokenize (vLLM's and llama.cpp's forms) and min_tokens against
`troupe serve` on the default model: tokenize then detokenize gives back the text, a chat's
tokens are what a chat completion counts as prompt_tokens, min_tokens keeps a prompt the model
would end at once going, and bad input gets 400 with the OpenAI error object."""

import json
import sys
import urllib.error
import urllib.request

import openai

import troupe_server

KEY = "sk-troupe-e2e"

TEXTS = [
    "Hello, world!",
    "The capital of France is Paris.",
    "naïve café, Grüße aus Köln — ½ € ✓",
    "日本語のテキストと中文和한국어 🙂👍🏽",
    "  leading spaces\nnew lines\n\n\ttabs and trailing  ",
    "<|im_start|>user\nHi<|im_end|>",
]

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def post(base_url, path, body, key=KEY):
    """POST a JSON body; returns (status, headers, parsed JSON answer)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base_url + path, data=json.dumps(body, ensure_ascii=False).encode(),
                                     headers=headers, method="POST")
    try:
        with _direct.open(request, timeout=120) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def piece_bytes(piece):
    """A with_pieces piece: a string, or the list of its bytes when they are not UTF-8."""
    return piece.encode() if isinstance(piece, str) else bytes(piece)


def check_round_trips(base, max_model_len):
    for text in TEXTS:
        status, _, answer = post(base, "/tokenize", {"content": text})
        check(status == 200 and answer["count"] == len(answer["tokens"]) > 0,
              f"/tokenize (llama.cpp's content) answers ids and their count for {text!r}")
        check(answer["max_model_len"] == max_model_len, "/tokenize reports max_model_len as /v1/models does")
        status, _, back = post(base, "/detokenize", {"tokens": answer["tokens"]})
        check(status == 200 and back["content"] == text and back["prompt"] == text,
              f"/detokenize of those ids gives back {text!r}")

        status, _, vllm = post(base, "/tokenize", {"model": "x", "prompt": text, "add_special_tokens": False})
        status_back, _, vllm_back = post(base, "/detokenize", {"model": "x", "tokens": vllm["tokens"]})
        check(status == 200 and status_back == 200 and vllm_back["prompt"] == text,
              f"vLLM's prompt form round-trips {text!r} too")

        status, _, pieces = post(base, "/tokenize", {"content": text, "with_pieces": True})
        ids = [t["id"] for t in pieces["tokens"]]
        joined = b"".join(piece_bytes(t["piece"]) for t in pieces["tokens"])
        check(status == 200 and ids == answer["tokens"] and joined == text.encode(),
              "with_pieces gives each id with its piece, and the pieces make the text")


def check_chat_count(base, client, model):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name one colour of the rainbow, s'il vous plaît."}]
    status, _, answer = post(base, "/tokenize", {"model": model, "messages": messages})
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=1, temperature=0)
    check(status == 200 and answer["count"] == chat.usage.prompt_tokens,
          f"/tokenize of messages counts {answer.get('count')} tokens, as the chat completion's "
          f"prompt_tokens ({chat.usage.prompt_tokens})")


def check_min_tokens(base, client, model):
    # A prompt the model ends at once: a chat followed by the model's own whole greedy answer,
    # whose next token is the end of the turn. Built from /tokenize, fed as token ids.
    messages = [{"role": "user", "content": "Hi"}]
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=48, temperature=0)
    check(reply.choices[0].finish_reason == "stop", "the greedy reply to 'Hi' ends by itself")
    _, _, chat_ids = post(base, "/tokenize", {"messages": messages})
    _, _, reply_ids = post(base, "/tokenize", {"content": reply.choices[0].message.content, "parse_special": False})
    prompt = chat_ids["tokens"] + reply_ids["tokens"]

    ends = client.completions.create(model=model, prompt=prompt, max_tokens=32, temperature=0)
    check(ends.choices[0].finish_reason == "stop" and ends.usage.completion_tokens <= 1,
          f"without min_tokens the model ends at once ({ends.usage.completion_tokens} token)")
    held = client.completions.create(model=model, prompt=prompt, max_tokens=32, temperature=0,
                                     extra_body={"min_tokens": 6})
    check(held.usage.completion_tokens >= 6 and len(held.choices[0].text) > 0,
          f"min_tokens 6 makes it write {held.usage.completion_tokens} tokens: {held.choices[0].text!r}")
    chat_held = client.chat.completions.create(model=model, messages=messages, max_tokens=48, temperature=0,
                                               extra_body={"min_tokens": reply.usage.completion_tokens + 3})
    check(chat_held.usage.completion_tokens >= reply.usage.completion_tokens + 3,
          "min_tokens holds a chat completion past its natural end too")

    # A stop string within the first min_tokens tokens is output as text.
    plain = client.completions.create(model=model, prompt="The capital of France is", max_tokens=12,
                                      temperature=0, stop=["."])
    check(plain.usage.completion_tokens < 8, f"the stop string '.' ends the output early: {plain.choices[0].text!r}")
    kept = client.completions.create(model=model, prompt="The capital of France is", max_tokens=12,
                                     temperature=0, stop=["."], extra_body={"min_tokens": 8})
    check(kept.usage.completion_tokens >= 8 and kept.choices[0].text.startswith(plain.choices[0].text + "."),
          f"with min_tokens 8 it does not: {kept.choices[0].text!r}")


def check_refusals(base, client, model):
    cases = [
        ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "messages"),
        ("/tokenize", {"content": "a", "unknown_option": True}, "unknown_option"),
        ("/tokenize", {"content": ["a"]}, "content"),
        ("/tokenize", {"content": "a", "with_pieces": "yes"}, "with_pieces"),
        ("/detokenize", {"tokens": [1, 10 ** 9]}, "tokens"),
        ("/detokenize", {"tokens": [-1]}, "tokens"),
        ("/detokenize", {"tokens": "1 2 3"}, "tokens"),
    ]
    for path, body, param in cases:
        status, _, answer = post(base, path, body)
        error = answer.get("error", {})
        check(status == 400 and error.get("param") == param and error.get("type") == "invalid_request_error",
              f"{path} {json.dumps(body)} is 400 naming {param}: {error.get('message')}")
    status, _, answer = post(base, "/tokenize", {"content": "a"}, key=None)
    check(status == 401 and answer["error"]["code"] == "invalid_api_key", "/tokenize needs the API key")
    try:
        client.completions.create(model=model, prompt="hi", max_tokens=4, extra_body={"min_tokens": 5})
        check(False, "min_tokens over max_tokens is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "min_tokens" in str(e), "min_tokens over max_tokens is a 400 naming it")


def main():
    args = troupe_server.parse_args(__doc__)
    with troupe_server.start(args.troupe, args.model, extra_args=["--api-key", KEY]) as server:
        base = server.base_url
        client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=120)
        model = client.models.list().data[0]
        max_model_len = model.model_extra["max_model_len"]
        check_round_trips(base, max_model_len)
        check_chat_count(base, client, model.id)
        check_min_tokens(base, client, model.id)
        check_refusals(base, client, model.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The official OpenAI Python client, unchanged, against `troupe serve` on the default model:
completions and chat, whole and streamed, usage in the stream, logprobs, the model list, and
the client's own exception types for a bad key and a bad parameter."""

import sys

import openai

import troupe_server

KEY = "sk-troupe-e2e"


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def main():
    args = troupe_server.parse_args(__doc__)
    with troupe_server.start(args.troupe, args.model, extra_args=["--api-key", KEY]) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0, timeout=120)

        models = client.models.list()
        model = models.data[0].id
        check(len(models.data) == 1 and model, f"models.list() names the served model ({model})")

        completion = client.completions.create(model=model, prompt="The capital of France is",
                                               max_tokens=12, temperature=0)
        choice = completion.choices[0]
        check(len(choice.text) > 0 and choice.finish_reason in ("stop", "length"),
              f"completions.create returns text: {choice.text!r}")
        check(completion.usage.completion_tokens <= 12 and completion.usage.prompt_tokens > 0,
              "completions.create reports usage")

        by_ids = client.completions.create(model=model, prompt=[1, 504, 3575, 282, 4649], max_tokens=4,
                                           temperature=0)
        check(by_ids.usage.prompt_tokens == 5 and by_ids.usage.completion_tokens > 0,
              "a prompt of token ids is fed as given (5 ids, no BOS added)")

        messages = [{"role": "user", "content": "Name one colour of the rainbow."}]
        chat = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
        whole = chat.choices[0].message.content
        check(chat.choices[0].message.role == "assistant" and len(whole) > 0,
              f"chat.completions.create returns an answer: {whole!r}")

        stream = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        pieces, usage, finish = [], None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        check("".join(pieces) == whole, "a streamed greedy chat equals the whole answer")
        check(finish in ("stop", "length"), f"the stream ends with finish_reason {finish}")
        check(usage is not None and usage.completion_tokens == chat.usage.completion_tokens,
              "stream_options.include_usage adds a usage chunk")

        streamed_text = "".join(c.choices[0].text for c in client.completions.create(
            model=model, prompt="The capital of France is", max_tokens=12, temperature=0, stream=True)
            if c.choices)
        check(streamed_text == choice.text, "a streamed greedy completion equals the whole one")

        with_logprobs = client.chat.completions.create(model=model, messages=messages, max_tokens=4,
                                                       temperature=0, logprobs=True, top_logprobs=3)
        content = with_logprobs.choices[0].logprobs.content
        check(len(content) > 0 and all(len(t.top_logprobs) == 3 for t in content),
              "chat logprobs carry top_logprobs alternatives")
        check(all(t.logprob <= 0 for t in content), "logprobs are log-probabilities")

        try:
            client.completions.create(model=model, prompt="hi", max_tokens=-1)
            check(False, "a negative max_tokens is refused")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and "max_tokens" in str(e), "a bad parameter is a BadRequestError naming it")

        bad = openai.OpenAI(base_url=server.base_url + "/v1", api_key="wrong", max_retries=0)
        try:
            bad.models.list()
            check(False, "a wrong key is refused")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, "a wrong key is an AuthenticationError")
    return 0


if __name__ == "__main__":
    sys.exit(main())

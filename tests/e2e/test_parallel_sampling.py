"""Parallel sampling against `troupe serve` on the default model: the official OpenAI client asks
for n = 4 streamed (four indices, each finishing), n greedy choices (all equal to the single
greedy answer), seeded choices (reproduced by the same request), best_of (the kept choices
are the likeliest, usage counts every candidate), beam search (width 1 is greedy; beam_width
and vLLM's use_beam_search agree; streamed, the hypotheses arrive at the end) and refusals; a
WebSocket client asks for n = 2 and sees indexed deltas, a choice_done per choice, and one
done listing both."""

import json
import time

import openai
from websockets.sync.client import connect

import troupe_server


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def main():
    args = troupe_server.parse_args(__doc__)
    with troupe_server.start(args.troupe, args.model) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="none", max_retries=0, timeout=120)
        model = client.models.list().data[0].id
        messages = [{"role": "user", "content": "Write one sentence about the sea."}]

        stream = client.chat.completions.create(model=model, messages=messages, max_tokens=20, n=4,
                                                temperature=0.9, seed=3, stream=True,
                                                stream_options={"include_usage": True})
        text, finish, usage = {}, {}, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                text[c.index] = text.get(c.index, "") + (c.delta.content or "")
                if c.finish_reason is not None:
                    check(c.index not in finish, f"choice {c.index} finishes once")
                    finish[c.index] = c.finish_reason
        check(sorted(text) == [0, 1, 2, 3], "n = 4 streamed: four indices")
        check(sorted(finish) == [0, 1, 2, 3] and all(r in ("stop", "length") for r in finish.values()),
              f"every choice finishes: {finish}")
        check(all(len(t) > 0 for t in text.values()), "every choice has text")
        check(len(set(text.values())) > 1, "sampled choices differ")
        check(usage is not None and usage.completion_tokens <= 4 * 20, "usage counts all four choices")

        again = client.chat.completions.create(model=model, messages=messages, max_tokens=20, n=4,
                                               temperature=0.9, seed=3)
        check({c.index: c.message.content for c in again.choices} == text,
              "the same seed reproduces all four choices, streamed or not")

        single = client.completions.create(model=model, prompt="The three primary colours are", max_tokens=12,
                                           temperature=0)
        greedy = client.completions.create(model=model, prompt="The three primary colours are", max_tokens=12,
                                           temperature=0, n=3)
        check([c.index for c in greedy.choices] == [0, 1, 2], "n = 3 returns three choices in order")
        check(all(c.text == single.choices[0].text for c in greedy.choices),
              "greedy choices all equal the single greedy completion")
        check(greedy.usage.prompt_tokens == single.usage.prompt_tokens and
              greedy.usage.completion_tokens == 3 * single.usage.completion_tokens,
              "the prompt is counted once, the completions three times")

        best = client.completions.create(model=model, prompt="A short poem:", max_tokens=10, temperature=1.0,
                                         n=2, best_of=5, seed=9, logprobs=0)
        check(len(best.choices) == 2, "best_of 5, n 2 returns two choices")
        sums = [sum(c.logprobs.token_logprobs) for c in best.choices]
        check(sums[0] >= sums[1], f"the kept choices come likeliest first: {sums}")
        check(best.usage.completion_tokens > sum(len(c.logprobs.tokens) for c in best.choices),
              "usage counts every candidate best_of sampled")

        for bad, param in (({"n": 0}, "n"), ({"n": 2, "best_of": 1}, "best_of"),
                           ({"best_of": 3, "stream": True}, "best_of"),
                           ({"n": 3, "extra_body": {"beam_width": 2}}, "n"),
                           ({"extra_body": {"beam_width": 11}}, "beam_width")):
            try:
                client.completions.create(model=model, prompt="x", max_tokens=2, **bad)
                check(False, f"{bad} is refused")
            except openai.BadRequestError as e:
                check(e.status_code == 400 and param in str(e), f"{bad} is refused naming {param}")

        one_beam = client.completions.create(model=model, prompt="The three primary colours are", max_tokens=12,
                                             extra_body={"beam_width": 1})
        check(one_beam.choices[0].text == single.choices[0].text, "a beam search of width 1 is greedy decoding")
        beams = client.completions.create(model=model, prompt="The three primary colours are", max_tokens=12, n=3,
                                          extra_body={"beam_width": 4, "length_penalty": 1.0})
        check([c.index for c in beams.choices] == [0, 1, 2] and len({c.text for c in beams.choices}) == 3,
              f"beam_width 4, n 3: three different hypotheses {[c.text for c in beams.choices]}")
        vllm_style = client.completions.create(model=model, prompt="The three primary colours are", max_tokens=12,
                                               n=3, best_of=4, extra_body={"use_beam_search": True})
        check([c.text for c in vllm_style.choices] == [c.text for c in beams.choices],
              "use_beam_search with best_of 4 is the same search")
        streamed = client.chat.completions.create(model=model, messages=messages, max_tokens=16, n=2, stream=True,
                                                  extra_body={"beam_width": 2})
        beam_text, beam_finish = {}, {}
        for chunk in streamed:
            for c in chunk.choices:
                beam_text[c.index] = beam_text.get(c.index, "") + (c.delta.content or "")
                if c.finish_reason is not None:
                    beam_finish[c.index] = c.finish_reason
        check(sorted(beam_text) == [0, 1] and sorted(beam_finish) == [0, 1],
              "a streamed beam search returns its two hypotheses, each finishing")

        with connect(server.ws_url, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "generate", "id": "pair", "prompt": "Once upon a time", "max_tokens": 8,
                                "n": 2, "temperature": 0.8, "seed": 1}))
            frames, deadline = [], time.monotonic() + 120
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(json.loads(ws.recv(timeout=max(1, deadline - time.monotonic()))))
            kinds = [f["type"] for f in frames]
            check(kinds[0] == "accepted" and kinds[-1] == "done", "a WebSocket n = 2 request is accepted and done")
            indices = {f["index"] for f in frames if f["type"] == "delta"}
            check(indices == {0, 1}, "its deltas carry both indices")
            ends = [f["index"] for f in frames if f["type"] == "choice_done"]
            check(sorted(ends) == [0, 1], "a choice_done for each choice before the done")
            check([c["index"] for c in frames[-1]["choices"]] == [0, 1], "the done lists both choices")


if __name__ == "__main__":
    main()

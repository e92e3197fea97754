"""Structured output against `troupe serve` on the default model, through the official OpenAI client:
response_format json_schema on chat for two dozen schemas (nested objects, enums, const, bounded
arrays, patterns, integer ranges, booleans, null, type lists, optional properties, anyOf / oneOf /
allOf, $ref and $defs with recursion, string lengths, non-ASCII), each answer parsed and checked
with the `jsonschema` package; json_object; a streamed schema equal to the whole answer; n = 3;
vLLM's guided_regex, guided_choice and guided_json on completions and chat; refusals (an unsupported
keyword named with its path, a bad regex, two constraints at once, a malformed response_format);
response_format text changes nothing; and a WebSocket generate with a schema. The model is tiny:
the prompts ask for JSON, but the answers are valid because of the constraint."""

import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import openai
from websockets.sync.client import connect

import troupe_server

try:
    import jsonschema
except ImportError:
    # A missing dependency is a failure, never a skip: say how to get it.
    sys.exit("FAIL: the Python package jsonschema is missing: run scripts/install_test_deps.sh")

MAX_TOKENS = 300
SYSTEM = "You are a helpful assistant that replies with JSON only."

SHORT_TEXT = {"type": "string", "minLength": 1, "maxLength": 20}
POINT = {"type": "object", "additionalProperties": False, "required": ["x", "y"],
         "properties": {"x": {"type": "integer", "minimum": -100, "maximum": 100},
                        "y": {"type": "integer", "minimum": -100, "maximum": 100}}}

# (name, what to ask for, schema): every keyword here is one docs/structured-output.md supports.
CASES = [
    ("person", "Alice is a 30 year old student.",
     {"type": "object", "additionalProperties": False, "required": ["name", "age", "is_student"],
      "properties": {"name": SHORT_TEXT, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                     "is_student": {"type": "boolean"}}}),
    ("enum", "The sky is blue.",
     {"type": "object", "additionalProperties": False, "required": ["color"],
      "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}}}),
    ("const", "A version 2 report that passed.",
     {"type": "object", "additionalProperties": False, "required": ["version", "kind", "passed"],
      "properties": {"version": {"const": 2}, "kind": {"const": "report"}, "passed": {"type": "boolean"}}}),
    ("bounded_array", "Name three to five fruits.",
     {"type": "object", "additionalProperties": False, "required": ["fruits"],
      "properties": {"fruits": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 12},
                                "minItems": 3, "maxItems": 5}}}),
    ("pattern", "A product code such as ABC-123.",
     {"type": "object", "additionalProperties": False, "required": ["code"],
      "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}}}),
    ("integer_ranges", "The date 14 July 1989.",
     {"type": "object", "additionalProperties": False, "required": ["year", "month", "day"],
      "properties": {"year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                     "month": {"type": "integer", "minimum": 1, "maximum": 12},
                     "day": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 32}}}),
    ("booleans", "Answer four yes/no questions with true or false.",
     {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 4}),
    ("null", "An empty result that is ok.",
     {"type": "object", "additionalProperties": False, "required": ["result", "ok"],
      "properties": {"result": {"type": "null"}, "ok": {"type": "boolean"}}}),
    ("type_lists", "A user with no nickname and a score of 7.",
     {"type": "object", "additionalProperties": False, "required": ["nickname", "score"],
      "properties": {"nickname": {"type": ["string", "null"], "maxLength": 10},
                     "score": {"type": ["integer", "null"], "minimum": 0, "maximum": 10}}}),
    ("optional_properties", "The book Dune has 412 pages.",
     {"type": "object", "additionalProperties": False, "required": ["title"],
      "properties": {"title": {"type": "string", "maxLength": 30}, "subtitle": {"type": "string", "maxLength": 30},
                     "pages": {"type": "integer", "minimum": 1, "maximum": 5000}}}),
    ("nested_objects", "The company Acme, whose CEO is Bob, 50, is in Paris, France.",
     {"type": "object", "additionalProperties": False, "required": ["company"],
      "properties": {"company": {
          "type": "object", "additionalProperties": False, "required": ["name", "ceo", "address"],
          "properties": {
              "name": SHORT_TEXT,
              "ceo": {"type": "object", "additionalProperties": False, "required": ["name", "age"],
                      "properties": {"name": SHORT_TEXT, "age": {"type": "integer", "minimum": 18, "maximum": 99}}},
              "address": {"type": "object", "additionalProperties": False, "required": ["city", "country"],
                          "properties": {"city": SHORT_TEXT, "country": SHORT_TEXT}}}}}}),
    ("any_of", "A circle of radius 3.",
     {"type": "object", "additionalProperties": False, "required": ["shape"],
      "properties": {"shape": {"anyOf": [
          {"type": "object", "additionalProperties": False, "required": ["kind", "radius"],
           "properties": {"kind": {"const": "circle"}, "radius": {"type": "integer", "minimum": 1, "maximum": 50}}},
          {"type": "object", "additionalProperties": False, "required": ["kind", "width", "height"],
           "properties": {"kind": {"const": "rectangle"}, "width": {"type": "integer", "minimum": 1, "maximum": 50},
                          "height": {"type": "integer", "minimum": 1, "maximum": 50}}}]}}}),
    ("one_of", "Call the tool that gives the weather in Oslo.",
     {"oneOf": [
         {"type": "object", "additionalProperties": False, "required": ["tool", "arguments"],
          "properties": {"tool": {"const": "get_weather"},
                         "arguments": {"type": "object", "additionalProperties": False, "required": ["city"],
                                       "properties": {"city": SHORT_TEXT}}}},
         {"type": "object", "additionalProperties": False, "required": ["tool", "arguments"],
          "properties": {"tool": {"const": "get_time"},
                         "arguments": {"type": "object", "additionalProperties": False, "required": ["zone"],
                                       "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}}}}}]}),
    ("defs_and_ref", "A line from the point (0, 0) to the point (3, 4).",
     {"$defs": {"point": POINT}, "type": "object", "additionalProperties": False, "required": ["start", "end"],
      "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}}}),
    ("recursive_tree", 'The tree {"value": 1, "children": [{"value": 2}, {"value": 3}]}.',
     {"$defs": {"node": {"type": "object", "additionalProperties": False, "required": ["value"],
                         "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 99},
                                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"},
                                                     "maxItems": 3}}}},
      "$ref": "#/$defs/node"}),
    ("recursive_list", 'The list {"head": "a", "tail": {"head": "b", "tail": null}}.',
     {"definitions": {"list": {"type": "object", "additionalProperties": False, "required": ["head", "tail"],
                               "properties": {"head": {"type": "string", "minLength": 1, "maxLength": 5},
                                              "tail": {"anyOf": [{"$ref": "#/definitions/list"},
                                                                 {"type": "null"}]}}}},
      "$ref": "#/definitions/list"}),
    ("string_lengths", "A word of three to eight letters.",
     {"type": "object", "additionalProperties": False, "required": ["word"],
      "properties": {"word": {"type": "string", "minLength": 3, "maxLength": 8}}}),
    ("number", "A price of 9.99 euros.",
     {"type": "object", "additionalProperties": False, "required": ["amount", "currency"],
      "properties": {"amount": {"type": "number"}, "currency": {"enum": ["USD", "EUR", "GBP"]}}}),
    ("array_of_objects", "Two to-do items: item 1 is done, item 2 is not.",
     {"type": "array", "minItems": 2, "maxItems": 3,
      "items": {"type": "object", "additionalProperties": False, "required": ["id", "done"],
                "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 100}, "done": {"type": "boolean"}}}}),
    ("mixed_enum", "Pick one of the allowed values.", {"enum": ["a", 1, None, True, {"k": [1, 2]}]}),
    ("top_level_pattern", "Is water wet? Answer yes or no.", {"type": "string", "pattern": "^(yes|no)$"}),
    ("all_of", "Is fire hot? Answer true or false.",
     {"allOf": [{"$ref": "#/$defs/flag"}], "$defs": {"flag": {"type": "boolean"}}}),
    ("non_ascii", "A city in Switzerland, Japan or Brazil.",
     {"type": "object", "additionalProperties": False, "required": ["city"],
      "properties": {"city": {"enum": ["Zürich", "東京", "São Paulo"]}, "note": {"type": "string", "maxLength": 12}}}),
    ("nested_arrays", "A 2 by 2 matrix of digits.",
     {"type": "array", "minItems": 2, "maxItems": 2,
      "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 0, "maximum": 9}}}),
    ("annotations", "A 3 year old cat.",
     {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Pet", "description": "A pet.",
      "type": "object", "additionalProperties": False, "required": ["species", "age"],
      "properties": {"species": {"type": "string", "enum": ["cat", "dog"], "description": "what it is"},
                     "age": {"type": "integer", "minimum": 0, "maximum": 30, "default": 1, "examples": [2]}}}),
    ("empty_object", "Nothing at all.", {"type": "object", "properties": {}, "additionalProperties": False}),
]


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def check_valid(text, schema, what):
    """Parses text as JSON and validates it against schema; the AssertionError shows both."""
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        raise AssertionError(f"{what}: the output is not JSON ({e}): {text!r}\nschema: {json.dumps(schema)}")
    try:
        jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        raise AssertionError(f"{what}: the output does not match the schema ({e.message} at {e.json_path}): "
                             f"{text!r}\nschema: {json.dumps(schema)}")
    return value


def json_schema_format(name, schema):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def ask(name, description, schema):
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{description}\nReply with JSON that matches this schema: {json.dumps(schema)}"}]


def sampling(i):
    """Even cases greedy, odd ones sampled at 0.8 with a seed."""
    return {"temperature": 0} if i % 2 == 0 else {"temperature": 0.8, "seed": 100 + i}


def expect_refusal(what, call, words, params):
    """call() must raise a 400 whose message contains every word and whose param starts with one of params."""
    try:
        call()
    except openai.BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        message = body.get("message") or str(e)
        check(e.status_code == 400 and e.code == "invalid_request" and all(w in message for w in words),
              f"{what}: 400 invalid_request naming {', '.join(words) or 'the field'}: {message!r}")
        check(any((e.param or "").startswith(p) for p in params), f"{what}: param {e.param!r} names the field")
        return message
    raise AssertionError(f"{what} was accepted; expected HTTP 400")


def ws_request(ws, frame, timeout_s=120):
    """Sends one generate frame and returns (text, last frame) once it has ended."""
    ws.send(json.dumps(frame))
    text, deadline = "", time.monotonic() + timeout_s
    while True:
        f = json.loads(ws.recv(timeout=max(1, deadline - time.monotonic())))
        if f.get("id") != frame["id"]:
            continue
        if f["type"] == "delta":
            text += f["text"]
        elif f["type"] in ("done", "error"):
            return text, f


def main():
    args = troupe_server.parse_args(__doc__)
    with troupe_server.start(args.troupe, args.model) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="none", max_retries=0, timeout=120)
        model = client.models.list().data[0].id

        def run_case(i):
            name, description, schema = CASES[i]
            return client.chat.completions.create(model=model, messages=ask(name, description, schema),
                                                  max_tokens=MAX_TOKENS, **sampling(i),
                                                  response_format=json_schema_format(name, schema))

        # Several at once: different grammars share the batch, each sequence keeps to its own.
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(run_case, range(len(CASES))))
        for i, ((name, _, schema), answer) in enumerate(zip(CASES, answers)):
            choice = answer.choices[0]
            content = choice.message.content
            if choice.finish_reason != "stop":
                raise AssertionError(f"json_schema {name}: finish_reason {choice.finish_reason}, not stop: {content!r}")
            check_valid(content, schema, f"json_schema {name}")
            print(f"ok: json_schema {name} ({'greedy' if i % 2 == 0 else 'sampled'}) stops and matches: {content!r}")
        check(len(CASES) >= 20, f"{len(CASES)} schemas, each answer valid")

        # One request alone is the reference the streamed, described and WebSocket ones must equal.
        person_name, _, person_schema = CASES[0]
        alone = client.chat.completions.create(model=model, messages=ask(*CASES[0]), max_tokens=MAX_TOKENS,
                                               temperature=0,
                                               response_format=json_schema_format(person_name, person_schema))
        person = alone.choices[0].message.content
        check_valid(person, person_schema, "json_schema person alone")
        stream = client.chat.completions.create(model=model, messages=ask(*CASES[0]), max_tokens=MAX_TOKENS,
                                                temperature=0, stream=True, stream_options={"include_usage": True},
                                                response_format=json_schema_format(person_name, person_schema))
        pieces, finish, usage = [], None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                pieces.append(c.delta.content or "")
                finish = c.finish_reason or finish
        streamed = "".join(pieces)
        check_valid(streamed, person_schema, "streamed json_schema")
        check(finish == "stop" and streamed == person,
              f"a streamed greedy json_schema answer equals the whole one: {streamed!r}")
        check(usage is not None and usage.completion_tokens == alone.usage.completion_tokens,
              "the streamed answer's usage counts its tokens")

        described = client.chat.completions.create(
            model=model, messages=ask(*CASES[0]), max_tokens=MAX_TOKENS, temperature=0,
            response_format={"type": "json_schema", "json_schema": {
                "name": person_name, "description": "a person", "strict": False, "schema": person_schema}})
        check(described.choices[0].message.content == person,
              "json_schema's description and strict: false are accepted and change nothing")

        fruits_name, _, fruits_schema = CASES[3]
        several = client.chat.completions.create(model=model, messages=ask(*CASES[3]), max_tokens=MAX_TOKENS, n=3,
                                                 temperature=0.8, seed=7,
                                                 response_format=json_schema_format(fruits_name, fruits_schema))
        check([c.index for c in several.choices] == [0, 1, 2], "n = 3 with a json_schema returns three choices")
        for c in several.choices:
            check(c.finish_reason == "stop", f"n = 3, choice {c.index} stops: {c.message.content!r}")
            check_valid(c.message.content, fruits_schema, f"n = 3, choice {c.index}")
        print("ok: n = 3: all three choices match the schema")

        for i, (prompt, sample) in enumerate((("Describe a cat as a JSON object with the keys name and age.",
                                               {"temperature": 0}),
                                              ("Give a JSON object describing your favourite city.",
                                               {"temperature": 0.8, "seed": 3}))):
            answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                    max_tokens=MAX_TOKENS, response_format={"type": "json_object"},
                                                    **sample)
            content = answer.choices[0].message.content
            check(answer.choices[0].finish_reason == "stop", f"json_object {i} stops: {content!r}")
            try:
                value = json.loads(content)
            except json.JSONDecodeError as e:
                raise AssertionError(f"json_object {i}: not JSON ({e}): {content!r}")
            check(isinstance(value, dict), f"json_object {i} is a JSON object")

        plain_messages = [{"role": "user", "content": "Name one colour of the rainbow."}]
        plain = client.chat.completions.create(model=model, messages=plain_messages, max_tokens=24, temperature=0)
        as_text = client.chat.completions.create(model=model, messages=plain_messages, max_tokens=24, temperature=0,
                                                 response_format={"type": "text"})
        check(as_text.choices[0].message.content == plain.choices[0].message.content,
              f"response_format text is accepted and unconstrained: {as_text.choices[0].message.content!r}")

        # vLLM's extensions, on completions and chat.
        for endpoint, regex, prompt in (
                ("completions", r"\d{4}-\d{2}-\d{2}", "The first moon landing was on (YYYY-MM-DD): "),
                ("completions", r"(cat|dog)s? [0-9]{1,3}", "Animal and count: "),
                ("chat", r"\(\d{3}\) \d{3}-\d{4}", "Give me a US phone number.")):
            if endpoint == "completions":
                answer = client.completions.create(model=model, prompt=prompt, max_tokens=40, temperature=0.8, seed=5,
                                                   extra_body={"guided_regex": regex})
                text = answer.choices[0].text
            else:
                answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                        max_tokens=40, temperature=0,
                                                        extra_body={"guided_regex": regex})
                text = answer.choices[0].message.content
            check(re.fullmatch(regex, text) is not None and answer.choices[0].finish_reason == "stop",
                  f"guided_regex {regex} on {endpoint}: {text!r} matches whole, finish {answer.choices[0].finish_reason}")

        sentiments = ["positive", "negative", "neutral"]
        review = "Review: I loved every minute of this film, the best I have seen in years!\nSentiment:"
        picked = client.completions.create(model=model, prompt=review, max_tokens=10, temperature=0,
                                           extra_body={"guided_choice": sentiments})
        check(picked.choices[0].text in sentiments and picked.choices[0].finish_reason == "stop",
              f"guided_choice on completions: {picked.choices[0].text!r}")
        picked = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": review + " positive, negative or neutral?"}],
            max_tokens=10, temperature=0.8, seed=11, extra_body={"guided_choice": sentiments})
        check(picked.choices[0].message.content in sentiments, f"guided_choice on chat: {picked.choices[0].message.content!r}")
        # ignore_eos does not outlast the grammar: a complete choice ends the output there.
        picked = client.completions.create(model=model, prompt=review, max_tokens=50, temperature=0,
                                           extra_body={"guided_choice": sentiments, "ignore_eos": True})
        check(picked.choices[0].text in sentiments and picked.choices[0].finish_reason == "stop"
              and picked.usage.completion_tokens < 10,
              f"guided_choice with ignore_eos stops at the grammar's end: {picked.choices[0].text!r}, "
              f"finish {picked.choices[0].finish_reason}, {picked.usage.completion_tokens} tokens")

        point_line = CASES[13][2]
        guided = client.completions.create(model=model, prompt="A JSON line from (0, 0) to (3, 4): ",
                                           max_tokens=MAX_TOKENS, temperature=0, extra_body={"guided_json": point_line})
        check(guided.choices[0].finish_reason == "stop", f"guided_json (an object) on completions stops: "
                                                          f"{guided.choices[0].text!r}")
        check_valid(guided.choices[0].text, point_line, "guided_json on completions")
        print("ok: guided_json (an object) on completions matches the schema")
        guided = client.chat.completions.create(model=model, messages=ask(*CASES[5]), max_tokens=MAX_TOKENS,
                                                temperature=0.8, seed=2,
                                                extra_body={"guided_json": json.dumps(CASES[5][2])})
        check(guided.choices[0].finish_reason == "stop", f"guided_json (a string holding JSON) on chat stops: "
                                                          f"{guided.choices[0].message.content!r}")
        check_valid(guided.choices[0].message.content, CASES[5][2], "guided_json as a string on chat")
        print("ok: guided_json (a string holding JSON) on chat matches the schema")

        # Refusals: 400, naming the field, and for schemas the keyword and where it is.
        def chat_with(**extra):
            return lambda: client.chat.completions.create(model=model, messages=plain_messages, max_tokens=8, **extra)

        def completion_with(**extra):
            return lambda: client.completions.create(model=model, prompt="x", max_tokens=8, **extra)

        unsupported = {"type": "object", "patternProperties": {"^a": {"type": "string"}}}
        http_message = expect_refusal("an unsupported keyword",
                                      chat_with(response_format=json_schema_format("bad", unsupported)),
                                      ["patternProperties"], ["response_format"])
        expect_refusal("a nested unsupported keyword",
                       chat_with(response_format=json_schema_format("bad", {
                           "type": "object", "properties": {"email": {"type": "string", "format": "email"}}})),
                       ["format", "$.properties.email"], ["response_format"])
        expect_refusal("minimum on a number", chat_with(response_format=json_schema_format("bad", {
            "type": "number", "minimum": 0})), ["minimum"], ["response_format"])
        expect_refusal("an unsupported keyword in guided_json",
                       completion_with(extra_body={"guided_json": {"type": "object", "minProperties": 1}}),
                       ["minProperties"], ["guided_json"])
        expect_refusal("guided_json that is not JSON", completion_with(extra_body={"guided_json": "{"}),
                       [], ["guided_json"])
        expect_refusal("an invalid regex", completion_with(extra_body={"guided_regex": "("}), [], ["guided_regex"])
        expect_refusal("a backreference", completion_with(extra_body={"guided_regex": r"(a)\1"}), [],
                       ["guided_regex"])
        expect_refusal("an empty guided_choice", completion_with(extra_body={"guided_choice": []}), [],
                       ["guided_choice"])
        expect_refusal("response_format and guided_regex together",
                       chat_with(response_format={"type": "json_object"}, extra_body={"guided_regex": "a+"}),
                       ["response_format", "guided_regex"], ["response_format", "guided_regex"])
        expect_refusal("guided_choice and guided_json together",
                       completion_with(extra_body={"guided_choice": ["a"], "guided_json": {"type": "string"}}),
                       ["guided_choice", "guided_json"], ["guided_choice", "guided_json"])
        expect_refusal("json_schema without a schema",
                       chat_with(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
                       ["schema"], ["response_format"])
        expect_refusal("an unknown response_format type", chat_with(response_format={"type": "yaml"}), ["yaml"],
                       ["response_format"])
        expect_refusal("an unknown field in response_format",
                       chat_with(response_format={"type": "json_object", "colour": "blue"}), ["colour"],
                       ["response_format"])

        # The WebSocket reads the same fields: the same greedy answer, the same refusal.
        with connect(server.ws_url, open_timeout=30) as ws:
            text, done = ws_request(ws, {"type": "generate", "id": "schema", "messages": ask(*CASES[0]),
                                         "max_tokens": MAX_TOKENS, "temperature": 0,
                                         "response_format": {"type": "json_schema",
                                                             "json_schema": {"schema": person_schema}}})
            check(done["type"] == "done" and done["finish_reason"] == "stop",
                  f"a WebSocket generate with a json_schema (no name) ends with stop: {done}")
            check_valid(text, person_schema, "WebSocket json_schema")
            check(text == person, f"the WebSocket's greedy answer equals HTTP's: {text}")
            text, done = ws_request(ws, {"type": "generate", "id": "choice", "prompt": review, "max_tokens": 10,
                                         "guided_choice": sentiments})
            check(done["type"] == "done" and text in sentiments, f"guided_choice on the WebSocket: {text!r}")
            _, error = ws_request(ws, {"type": "generate", "id": "bad", "prompt": "x",
                                       "response_format": json_schema_format("bad", unsupported)})
            check(error["type"] == "error" and error["code"] == "invalid_request" and
                  error["message"] == http_message and (error.get("param") or "").startswith("response_format"),
                  f"the WebSocket refuses an unsupported keyword with HTTP's message: {error}")


if __name__ == "__main__":
    main()

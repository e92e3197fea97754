#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_ws_frames, fuzz_tokenizer and fuzz_chat_template under
fuzz/corpus/ (a few small files each; the fuzzer grows its own corpus from them).

    python3 fuzz/make_text_seeds.py
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


# fuzz_ws_frames: one byte for the transport's read size (< 128: that many bytes + 1 per
# read; else unlimited), then client frames, masked as RFC 6455 requires of a client.
def frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
generate = b'{"type":"generate","id":"a","prompt":"hi","max_tokens":4}'
write("fuzz_ws_frames", "generate", b"\xff" + frame(TEXT, generate))
write("fuzz_ws_frames", "generate_split_reads", b"\x02" + frame(TEXT, generate))
write("fuzz_ws_frames", "ping_cancel",
      b"\xff" + frame(TEXT, b'{"type":"ping","data":{"t":1}}') + frame(TEXT, b'{"type":"cancel","id":"a"}'))
write("fuzz_ws_frames", "fragmented",
      b"\xff" + frame(TEXT, generate[:20], fin=False) + frame(PING, b"p") + frame(CONT, generate[20:40], fin=False)
      + frame(CONT, generate[40:]))
write("fuzz_ws_frames", "over_limit",
      b"\xff" + frame(TEXT, b'{"type":"ping","data":"' + b"x" * 300 + b'"}') + frame(TEXT, b'{"type":"ping"}'))
write("fuzz_ws_frames", "control_close",
      b"\xff" + frame(BINARY, b"\x00\x01") + frame(PONG, b"") + frame(CLOSE, struct.pack(">H", 1000) + b"bye"))
write("fuzz_ws_frames", "long_length", b"\xff" + frame(TEXT, b"{" * 200)[:-150])

# fuzz_tokenizer: text as bytes.
write("fuzz_tokenizer", "english", b"The quick brown fox jumps over the lazy dog. It's 3.14, isn't it?\n")
write("fuzz_tokenizer", "chatml", b"<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<|endoftext|>")
write("fuzz_tokenizer", "invalid_utf8", b"ok \xc3\x28 \xa0\xa1 \xe2\x82 \xf0\x28\x8c\x28 \xc0\x80 \xed\xa0\x80 \xff\xfe end")
write("fuzz_tokenizer", "unicode", "naïve café 日本語のテキスト 😀👍🏽 ١٢٣ Ελληνικά\u00a0\u2003x".encode())
write("fuzz_tokenizer", "code", b"def f(x):\n\tif x  >= 10:\n\t\treturn [x ** 2 for _ in range(123456)]\r\n\n\n   ")


# fuzz_chat_template: FuzzedDataProvider takes strings from the front (a backslash and any
# other byte end one) and integers from the back: the template, add_generation_prompt, then
# per message a role (0 system, 1 user, 2 assistant, 3 a role string).
def conversation(choice, add_generation_prompt, messages, jinja=None):
    front, back = b"", [choice, add_generation_prompt]
    if jinja is not None:
        front += jinja.replace(b"\\", b"\\\\") + b"\\e"
    for role, content in messages:
        back.append(role if isinstance(role, int) else 3)
        if not isinstance(role, int):
            front += role + b"\\e"
        front += content.replace(b"\\", b"\\\\") + b"\\e"
    return front + bytes(reversed(back))


chat = [(0, b"You are brief."), (1, b"  hi there \n"), (2, b"hello!"), (1, b"bye")]
write("fuzz_chat_template", "chatml", conversation(0, 1, chat))
write("fuzz_chat_template", "llama3", conversation(1, 1, chat))
write("fuzz_chat_template", "gemma", conversation(2, 0, [(0, b"sys"), (2, b"a"), (1, b"u")]))
write("fuzz_chat_template", "mistral_v7", conversation(11, 1, [(1, b"[INST]\xff\xfe</s>"), (2, b"")]))
write("fuzz_chat_template", "bad_role", conversation(4, 1, [(1, b"x"), (b"tool", b"y")]))
write("fuzz_chat_template", "jinja_default_system", conversation(
    13, 1, [(1, b"q")],
    jinja=b"{% if messages[0]['role'] != 'system' %}<|im_start|>system\\nYou are helpful.<|im_end|>\\n{% endif %}"))

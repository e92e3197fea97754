#!/usr/bin/env python3
"""Writes tests/data/tokenizer_golden.json: llama.cpp's tokenization of fixed strings, for
the default model (SmolLM2, byte-level BPE, pre "smollm") and for a tiny SentencePiece vocab
this script writes to tests/data/tokenizer_spm_tiny.gguf; plus SmolLM2's Jinja chat template
rendered by jinja2 for a few conversations.

Needs: llama-cpp-python (for llama.cpp itself), gguf (GGUFWriter), jinja2.
    python3 tests/data/make_tokenizer_golden.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import ctypes
import json
import os
import sys
import tempfile

import gguf
import jinja2
import jinja2.sandbox
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
SPM_PATH = os.path.join(HERE, "tokenizer_spm_tiny.gguf")
OUT_PATH = os.path.join(HERE, "tokenizer_golden.json")

BPE_TEXTS = [
    "", " ", "  ", "\n", "\n\n", "\t", " \t\n ", "a", "Hello world! 123", "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "   leading spaces", "trailing spaces   ", "multiple    spaces    inside",
    "tabs\tand\ttabs\t\t", "new\nlines\n\n\nmany", "mixed \t \n whitespace\r\nCRLF\r\n",
    "0", "12", "123", "1234567890", "3.14159265358979", "x=42;y=-7", "year 2024, 1,000,000 items",
    "I'm you're we've they'll she'd it's don't", "I'M YOU'RE WE'VE THEY'LL SHE'D IT'S DON'T",
    "'s 't 're 've 'm 'll 'd", "rock 'n' roll", "\"quoted\" and 'single'",
    "def add(a, b):\n    return a + b\n", "for (int i = 0; i < n; ++i) { sum += x[i]; }",
    "#include <stdio.h>\nint main() { printf(\"hi\\n\"); }", "<div class=\"x\">&amp;</div>",
    "https://example.com/path?q=1&r=two#frag", "user@example.org", "snake_case camelCase PascalCase",
    "café naïve résumé façade", "Ünïcödé àccents Ωmega", "straße ß ẞ", "ﬁ ligature ＡＢＣ fullwidth",
    "日本語のテキスト", "中文分词测试", "한국어 텍스트", "Привет, мир!", "Ελληνικά γράμματα",
    "مرحبا بالعالم", "नमस्ते दुनिया", "שלום עולם", "ไทย ภาษา",
    "emoji 😀😃😄 done", "👍🏽 skin tone", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇺🇸🇫🇷 flags",
    "mixed English日本語and русский123", "math ∑ ∫ √ ≤ ≥ ≠ ∞ π", "arrows → ← ↑ ↓ ⇒", "currency $ € £ ¥ ₹",
    "٣٤٥ Arabic-Indic digits ²³ superscripts ½", "zero\u200bwidth\u200djoiner", "nbsp\u00a0here\u3000ideo",
    "a" * 300, "ab " * 100, "!!!???...,,,", "<|im_start|>user\nhi<|im_end|>",
    "text <|endoftext|> more", "<|im_start|><|im_end|><|im_start|>", "<reponame>x<file_sep>y",
    "almost <|im_start special", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
]
BPE_BYTES = [b"invalid \xff\xfe bytes", b"truncated \xe2\x82", b"lone \x80 continuation", b"\xc0\x80 overlong"]
SPECIAL_BOTH_WAYS = {"<|im_start|>user\nhi<|im_end|>", "text <|endoftext|> more", "<|im_start|><|im_end|><|im_start|>",
                     "<reponame>x<file_sep>y", "almost <|im_start special",
                     "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n"}

SPM_TEXTS = [
    "", " ", "  ", "a", "the", "The", "hello world", "Hello World", " leading", "trailing ", "two  spaces",
    "the cat sat on the mat", "thinking things through", "in the inn", "interesting", "tttt", "eeee",
    "unknown: qxz jvw", "digits 0123456789", "punct !?.,;:", "newline\nhere", "tab\there",
    "café", "日本", "😀", "mix the 日本 and café", "<u>user defined</u>", "a<u>b", "<s>not parsed</s>",
    "at the end the", "hehehe", "sing sing singing", "the\tthe\nthe",
]


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# Pre-tokenizer variants checked by re-labelling SmolLM2's vocabulary (the split differs,
# the vocabulary and merges stay); the test builds the same files in memory.
PRE_VARIANTS = ["llama3", "qwen2", "gpt-2", "default", "starcoder"]
PRE_TEXTS = [
    "Hello world! 123", "I'M you're WE'VE they'll", "1234567890 and 12", "   lead  \t\ttabs \n\n  x",
    "a\r\n\r\nb  \n", "(parens)!\n\nnext", "x=42;y=-7.5e3", "café naïve 日本語 Привет",
    "emoji 😀👍🏽 ok", "def f(a):\n    return a**2\n", "!!!???...,,, $+<=>^~|`", "٣٤٥ ²³ ½ digits",
    "mixed123abc456", "it's 'quoted' ' spaced ' text", "end with space ", "\n", "",
    "<|im_start|>user\nhi<|im_end|>",
]


def relabel_vocab(src: str, pre: str, path: str) -> None:
    reader = gguf.GGUFReader(src)

    def strings(key):
        f = reader.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    types = reader.fields["tokenizer.ggml.token_type"]
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(strings("tokenizer.ggml.tokens"))
    w.add_token_types([int(types.parts[i][0]) for i in types.data])
    w.add_token_merges(strings("tokenizer.ggml.merges"))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_spm_vocab(path: str) -> None:
    pieces = [("<unk>", 0.0, gguf.TokenType.UNKNOWN), ("<s>", 0.0, gguf.TokenType.CONTROL),
              ("</s>", 0.0, gguf.TokenType.CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, gguf.TokenType.BYTE) for b in range(256)]
    words = ["▁", "e", "t", "a", "o", "i", "n", "s", "h", "r", "d", "l", "c", "u", "m", "g",
             "th", "he", "in", "er", "an", "▁t", "▁a", "▁th", "▁the", "▁s", "▁c", "at", "on", "en",
             "ing", "▁in", "▁the▁", "hing", "ink", "▁thin", "▁thinking", "▁sat", "▁cat", "▁mat",
             "▁on", "▁hello", "▁world", "ell", "ello", "▁h", "▁w", "or", "ld", "rld", "▁T", "T",
             "H", "W", "▁H", "▁W", "ter", "est", "int", "▁int", "▁interest", "ing▁", "▁sing", "si",
             "ng", "ings", "▁thing", "▁things", "ough", "▁through", "hr", "ro", "ou", "gh", "▁inn",
             "é", "caf", "▁caf", "日", "本", "▁日本", "tt", "ee", "eee", "hehe", "▁hehe"]
    for rank, w in enumerate(words):
        pieces.append((w, -float(rank) - (len(w) * 0.01), gguf.TokenType.NORMAL))
    pieces.append(("<u>", 0.0, gguf.TokenType.USER_DEFINED))
    pieces.append(("</u>", 0.0, gguf.TokenType.USER_DEFINED))
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([p[0] for p in pieces])
    w.add_token_scores([p[1] for p in pieces])
    w.add_token_types([int(p[2]) for p in pieces])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class vocab_only_model:
    def __init__(self, path: str):
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, data: bytes, add_special: bool, parse_special: bool) -> list:
        cap = len(data) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        assert n >= 0, n
        return list(buf[:n])

    def detokenize(self, ids: list, unparse_special: bool) -> bytes:
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 64 * len(ids)
        out = ctypes.create_string_buffer(cap)
        n = llama_cpp.llama_detokenize(self.vocab, arr, len(ids), out, cap, False, unparse_special)
        assert n >= 0, n
        return out.raw[:n]

    def piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 256, 0, special)
        assert n >= 0, n
        return buf.raw[:n]

    def pieces_hash(self, special: bool) -> str:
        data = bytearray()
        for t in range(self.n_vocab):
            p = self.piece(t, special)
            data += len(p).to_bytes(4, "little") + p
        return f"{fnv1a64(bytes(data)):016x}"

    def eog_ids(self) -> list:
        return [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]


def case(model: vocab_only_model, data: bytes, add_special: bool, parse_special: bool) -> dict:
    ids = model.tokenize(data, add_special, parse_special)
    c = {}
    try:
        c["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        c["text_hex"] = data.hex()
    c.update({"add_special": add_special, "parse_special": parse_special, "ids": ids,
              "decoded_hex": model.detokenize(ids, False).hex(),
              "decoded_special_hex": model.detokenize(ids, True).hex()})
    return c


def render_chat(template: str, messages: list, add_generation_prompt: bool) -> str:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token="<|im_start|>", eos_token="<|im_end|>")


def chat_template_of(path: str) -> str:
    reader = gguf.GGUFReader(path)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main() -> None:
    model_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    bpe = vocab_only_model(model_path)
    bpe_cases = []
    for text in BPE_TEXTS:
        data = text.encode("utf-8")
        bpe_cases.append(case(bpe, data, False, True))
        if text in SPECIAL_BOTH_WAYS:
            bpe_cases.append(case(bpe, data, False, False))
            bpe_cases.append(case(bpe, data, True, True))
    for data in BPE_BYTES:
        bpe_cases.append(case(bpe, data, False, True))

    template = chat_template_of(model_path)
    conversations = [
        ([{"role": "user", "content": "hi"}], True),
        ([{"role": "user", "content": "What is 2+2?"}], False),
        ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello!"}], True),
        ([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there."},
          {"role": "user", "content": "Tell me a joke\nplease"}], True),
        ([{"role": "system", "content": ""}, {"role": "user", "content": "  spaced  "}], True),
        ([], True),
    ]
    chats = []
    for messages, add_gen in conversations:
        rendered = render_chat(template, messages, add_gen)
        chats.append({"messages": messages, "add_generation_prompt": add_gen, "rendered": rendered,
                      "ids": bpe.tokenize(rendered.encode("utf-8"), False, True)})

    pre_variants = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_VARIANTS:
            path = os.path.join(tmp, f"{pre}.gguf")
            relabel_vocab(model_path, pre, path)
            m = vocab_only_model(path)
            pre_variants[pre] = [case(m, t.encode("utf-8"), True, True) for t in PRE_TEXTS]

    write_spm_vocab(SPM_PATH)
    spm = vocab_only_model(SPM_PATH)
    spm_cases = []
    for text in SPM_TEXTS:
        data = text.encode("utf-8")
        spm_cases.append(case(spm, data, True, False))
        spm_cases.append(case(spm, data, False, True))

    golden = {
        "bpe": {"model": os.path.basename(model_path), "eog_ids": bpe.eog_ids(), "n_vocab": bpe.n_vocab,
                "pieces_fnv1a": bpe.pieces_hash(False), "pieces_special_fnv1a": bpe.pieces_hash(True),
                "cases": bpe_cases, "chat_template": template, "chats": chats, "pre_variants": pre_variants},
        "spm": {"model": os.path.basename(SPM_PATH), "eog_ids": spm.eog_ids(), "n_vocab": spm.n_vocab,
                "pieces_fnv1a": spm.pieces_hash(False), "pieces_special_fnv1a": spm.pieces_hash(True),
                "cases": spm_cases},
        "llama_cpp_python": llama_cpp.__version__,
    }
    with open(OUT_PATH, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT_PATH}: {len(bpe_cases)} BPE cases, {len(spm_cases)} SPM cases, {len(chats)} chats; "
          f"BPE eog {golden['bpe']['eog_ids']}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes tests/data/qwen2.5-coder-0.5b/tokenizer_golden.json: llama.cpp's tokenization of
fixed strings with the Qwen2.5 vocabulary (byte-level BPE, pre-tokenizer "qwen2", 151,936
tokens; the 0.5B and 1.5B files share it), and the file's Jinja chat template rendered by
jinja2 for a few conversations.

The strings are make_tokenizer_golden.py's (BPE_TEXTS, the special-token texts both ways,
BPE_BYTES, PRE_TEXTS), code and text that exercise the qwen2 split (digits one at a time,
contractions, CJK, long whitespace runs), Qwen's own special tokens (FIM, tool calls), and
the first non-empty lines of two license texts from /usr/share/common-licenses.

Needs: llama-cpp-python (llama.cpp itself), gguf, jinja2; the model from
`scripts/fetch_model.sh qwen2.5-coder-0.5b`.
    python3 tests/data/make_tokenizer_golden_qwen.py [path/to/qwen2.5-coder-0.5b-instruct.gguf]
"""
import json
import os
import sys

import llama_cpp

from make_tokenizer_golden import (BPE_BYTES, BPE_TEXTS, PRE_TEXTS, SPECIAL_BOTH_WAYS, case,
                                   chat_template_of, render_chat, vocab_only_model)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODEL = os.path.join(ROOT, "models", "qwen2.5-coder-0.5b-instruct.gguf")
OUT_PATH = os.path.join(HERE, "qwen2.5-coder-0.5b", "tokenizer_golden.json")

QWEN_TEXTS = [
    "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n    return c<|fim_middle|>",
    "<|repo_name|>troupe\n<|file_sep|>src/main.cpp\nint main() {}",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
    "<|endoftext|><|im_end|><|im_start|>", "<|box_start|>x<|box_end|> <|quad_start|>",
    "<|vision_start|><|image_pad|><|vision_end|>", "[PAD151643] not special",
    "<|im_start|>assistant\n```python\nprint(1)\n```<|im_end|>",
    "9999999999999999", "3.141592653589793238", "1e-10 2E+5 0x1F 0b1010 0o17", "v1.2.3-rc4",
    "2024-06-01T12:34:56Z", "$1,234.56 and 78%", "IPv4 192.168.0.1:8080",
    "I'd've thought you'll'd", "DON'T WON'T CAN'T", "o'clock rock'n'roll", "it''s double",
    "    four spaces", "\t\t\ttabs", "line\n\n\n\n\nbreaks", "trailing\n   ", " \n \n \n", "\r\n\r\n",
    "a  b   c    d     e", "x" + " " * 40 + "y", "\u00a0\u2009\u202f\u3000 spaces",
    "通义千问是阿里云研发的大语言模型。", "你好，世界！今天天气很好。", "混合 English 和中文 123 文本",
    "日本語とカタカナとひらがな", "한국어와 English", "Ελληνικά και English", "עברית ו-English",
    "emoji in code: // 🚀 launch", "∀x∈ℝ: x² ≥ 0", "α β γ δ ε ζ η θ",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "fn main() {\n    let v: Vec<i32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "const x = async () => { await fetch('/api?q=1'); };",
    "#!/usr/bin/env bash\nset -euo pipefail\necho \"$HOME\" | tr a-z A-Z\n",
    "<html><body><p class='c'>Hi &nbsp; there</p></body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "std::vector<std::unique_ptr<Foo>> foos; foos.emplace_back(new Foo{});",
    "x+=1;y-=2;z*=3;w/=4;v%=5;u**=6;t//=7", "a->b.c::d", "i++ + ++i", "if(a&&b||!c)",
    "    if (x) {\n        return;\n    }\n", "// comment\n/* block */\n# hash\n-- dash",
    "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case",
    "__init__ __dunder__ _private", "path/to/file.py:123:45: error: E501",
    "https://github.com/QwenLM/Qwen2.5-Coder?tab=readme#quick-start",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ﬁﬂ ligatures", "ÀÉÎÕÜ àéîõü", "ǅ ǈ ǋ titlecase",
    "\u0301 combining first", "e\u0301 decomposed", "zero\u200bwidth", "\ufeffBOM start",
    "🇯🇵🇨🇳 flags", "👩🏽‍💻 coder", "🙂🙃🫠",
]


def license_lines(path, count):
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return lines[:count]


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    m = vocab_only_model(model_path)
    cases = []
    for text in BPE_TEXTS:
        data = text.encode("utf-8")
        cases.append(case(m, data, False, True))
        if text in SPECIAL_BOTH_WAYS:
            cases.append(case(m, data, False, False))
            cases.append(case(m, data, True, True))
    for data in BPE_BYTES:
        cases.append(case(m, data, False, True))
    for text in PRE_TEXTS + QWEN_TEXTS:
        cases.append(case(m, text.encode("utf-8"), False, True))
    for text in QWEN_TEXTS[:9]:  # the special-token texts, unparsed too
        cases.append(case(m, text.encode("utf-8"), False, False))
    for text in (license_lines("/usr/share/common-licenses/GPL-3", 25) +
                 license_lines("/usr/share/common-licenses/Apache-2.0", 15)):
        cases.append(case(m, text.encode("utf-8"), False, False))

    template = chat_template_of(model_path)
    conversations = [
        ([{"role": "user", "content": "hi"}], True),
        ([{"role": "user", "content": "What is 2+2?"}], False),
        ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello!"}], True),
        ([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there."},
          {"role": "user", "content": "Tell me a joke\nplease"}], True),
        ([{"role": "system", "content": ""}, {"role": "user", "content": "  spaced  "}], True),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "late system"},
          {"role": "user", "content": "b"}], True),
    ]
    chats = []
    for messages, add_gen in conversations:
        rendered = render_chat(template, messages, add_gen)
        chats.append({"messages": messages, "add_generation_prompt": add_gen, "rendered": rendered,
                      "ids": m.tokenize(rendered.encode("utf-8"), False, True)})

    golden = {"model": os.path.basename(model_path), "eog_ids": m.eog_ids(), "n_vocab": m.n_vocab,
              "pieces_fnv1a": m.pieces_hash(False), "pieces_special_fnv1a": m.pieces_hash(True),
              "cases": cases, "chat_template": template, "chats": chats,
              "llama_cpp_python": llama_cpp.__version__}
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    with open(OUT_PATH, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT_PATH}: {len(cases)} cases, {len(chats)} chats; eog {golden['eog_ids']}")


if __name__ == "__main__":
    main()

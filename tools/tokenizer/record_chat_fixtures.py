#!/usr/bin/env python3
"""Records the chat-template fixtures: renders each template under tests/tokenizer/fixtures/chat/ with
transformers' apply_chat_template over a set of conversations, and writes <template>.json beside it with the
expected strings (or the fact that rendering raised). tests/tokenizer/test_chat_template.cpp compares hyrax's
rendering byte for byte.

Run with the tools virtualenv (transformers + tokenizers + jinja2):
    python tools/tokenizer/record_chat_fixtures.py
"""
import json
import os

from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "tokenizer", "fixtures", "chat")

# The special tokens each template sees (transformers passes the tokenizer's special_tokens_map).
TEMPLATES = {
    "olmo3_instruct": dict(bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>"),
    "olmo3_think": dict(bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>"),
    "qwen3_next": dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"),
    "nemotron_h": dict(bos_token="<s>", eos_token="<SPECIAL_12>", unk_token="<unk>"),
    "nemotron_nano_v2": dict(bos_token="<s>", eos_token="<SPECIAL_12>", unk_token="<unk>"),
    "features": dict(bos_token="<s>", eos_token="</s>"),
}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web — returns «snippets».",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
]

TOOL_TURNS = [
    {"role": "system", "content": "Use tools when they help."},
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather",
                                          "arguments": {"city": "Paris", "unit": "celsius", "days": 3,
                                                        "threshold": 0.5, "flags": [True, None]}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
    {"role": "tool", "content": "{\"temp\": 21}"},
    {"role": "tool", "content": "{\"temp\": 5}"},
    {"role": "assistant", "content": "Paris is 21°C, Oslo 5°C."},
    {"role": "user", "content": "Thanks! Search for ski trips."},
]

CONVERSATIONS = [
    ("single_user", [{"role": "user", "content": "Hello!"}], None, {}),
    ("system_multi", [{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "What is 2+2?"},
                      {"role": "assistant", "content": "4"},
                      {"role": "user", "content": "And 3+3? /no_think"}], None, {"enable_thinking": False}),
    ("unicode_ws", [{"role": "user", "content": "  Grüße 👋🏽\n\tstraße  "},
                    {"role": "assistant", "content": " 中文 "},
                    {"role": "user", "content": "line1\r\nline2 'quoted' \"double\" \\ back"}], None, {}),
    ("tool_calls", TOOL_TURNS, TOOLS, {}),
    ("tool_calls_no_tools", TOOL_TURNS, None, {}),
    ("tool_string_args", [{"role": "user", "content": "Search cats"},
                          {"role": "assistant", "content": None, "tool_calls": [
                              {"type": "function", "function": {"name": "search", "arguments": "{\"q\": \"cats\"}"}}]},
                          {"role": "tool", "content": "[\"cats are great\"]"}], TOOLS[1:], {}),
    ("reasoning", [{"role": "user", "content": "Think: 17*23?"},
                   {"role": "assistant", "content": "<think>\n17*23 = 391\n</think>\n\n391"},
                   {"role": "user", "content": "Thanks /think"}], None, {}),
    ("reasoning_last", [{"role": "user", "content": "Think: 17*23?"},
                        {"role": "assistant", "content": "391", "reasoning_content": "17*23 = 391"}], None, {}),
    ("environment", [{"role": "user", "content": "Run it"}, {"role": "assistant", "content": "ok"},
                     {"role": "environment", "content": "exit 0"}, {"role": "user", "content": "next"}], None, {}),
    ("continue_assistant", [{"role": "user", "content": "Write a haiku"},
                            {"role": "assistant", "content": "Autumn moonlight—"}], None, {}),
    ("content_parts", [{"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
                       {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image"}],
                        "name": "bob", "shout": True},
                       {"role": "user", "content": "plain", "shout": True}], None, {}),
    ("bad_role", [{"role": "wizard", "content": "abracadabra"}], None, {}),
]


def tokenizer_with(special):
    vocab = {"[UNK]": 0}
    for v in special.values():
        vocab.setdefault(v, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


# The features template checks interpreter constructs; a few conversations are enough for it.
FEATURES_CONVERSATIONS = {"single_user", "system_multi", "tool_calls", "content_parts", "bad_role"}


def main():
    conversations = [{"name": n, "messages": m, "tools": t, "extra": e} for n, m, t, e in CONVERSATIONS]
    with open(os.path.join(FIXTURES, "conversations.json"), "w", encoding="utf-8") as f:
        json.dump(conversations, f, ensure_ascii=False, indent=1)
        f.write("\n")
    for name, special in TEMPLATES.items():
        with open(os.path.join(FIXTURES, name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        tok = tokenizer_with(special)
        cases = []
        for conv in conversations:
            if name == "features" and conv["name"] not in FEATURES_CONVERSATIONS:
                continue
            for gen in (False, True):
                case = {"conversation": conv["name"], "add_generation_prompt": gen}
                try:
                    case["expected"] = tok.apply_chat_template(conv["messages"], tools=conv["tools"],
                                                               chat_template=template, add_generation_prompt=gen,
                                                               tokenize=False, **conv["extra"])
                except Exception as e:  # the template rejects this conversation: hyrax must raise too
                    case["error"] = f"{type(e).__name__}: {e}"
                cases.append(case)
        out = {"template": name + ".jinja", "special_tokens": tok.special_tokens_map, "cases": cases}
        with open(os.path.join(FIXTURES, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        n_err = sum("error" in c for c in cases)
        print(f"{name}: {len(cases)} cases, {n_err} raise")


if __name__ == "__main__":
    main()

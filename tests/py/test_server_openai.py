"""hyrax serve driven by the official OpenAI Python SDK: completions (text, ids, several prompts), chat, streaming,
logprobs, echo, n, seeds, stop strings, tools reaching the chat template. Greedy output equals transformers'
greedy continuations recorded in tests/fixtures/kjv_hybrid_greedy.json."""
import json
import os
import shutil
import tempfile
import unittest

import openai

import server_util as su


def token_ids(choice):
    return (choice.model_extra or {}).get("token_ids")


class OpenAIClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = su.Server("--model", su.DEMO_MODEL, "--max-memory", "256M", "--max-seqs", "16")
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        with open(os.path.join(su.SOURCE_DIR, "tests", "fixtures", "kjv_hybrid_greedy.json"), encoding="utf-8") as f:
            cls.greedy = json.load(f)["greedy"]

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0
        cls.server.__exit__()

    def complete(self, **kw):
        kw.setdefault("model", su.MODEL_ID)
        return self.client.completions.create(**kw)

    def test_models(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [su.MODEL_ID])

    def test_greedy_equals_transformers(self):
        for g in self.greedy:
            r = self.complete(prompt=g["prompt_ids"], max_tokens=len(g["continuation"]), temperature=0,
                              extra_body={"return_token_ids": True})
            self.assertEqual(token_ids(r.choices[0]), g["continuation"], g["prompt"])
            # The same prompt as text tokenizes to the same ids and continues the same way.
            t = self.complete(prompt=g["prompt"], max_tokens=len(g["continuation"]), temperature=0)
            self.assertEqual(t.choices[0].text, r.choices[0].text)
            self.assertEqual(t.usage.prompt_tokens, len(g["prompt_ids"]))
            self.assertEqual(t.usage.completion_tokens, len(g["continuation"]))

    def test_several_prompts_in_one_request(self):
        prompts = [g["prompt"] for g in self.greedy[:3]]
        r = self.complete(prompt=prompts, max_tokens=8, temperature=0, n=2)
        self.assertEqual(len(r.choices), 6)
        self.assertEqual(sorted(c.index for c in r.choices), list(range(6)))
        for i, p in enumerate(prompts):
            alone = self.complete(prompt=p, max_tokens=8, temperature=0)
            by_index = {c.index: c for c in r.choices}
            self.assertEqual(by_index[2 * i].text, alone.choices[0].text)
            self.assertEqual(by_index[2 * i + 1].text, alone.choices[0].text)

    def test_streaming_equals_non_streaming(self):
        kw = dict(prompt="And the LORD spake unto Moses", max_tokens=30, temperature=0)
        full = self.complete(**kw)
        text, finish, usage = "", None, None
        for chunk in self.complete(stream=True, stream_options={"include_usage": True}, **kw):
            if chunk.choices:
                text += chunk.choices[0].text
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        self.assertEqual(text, full.choices[0].text)
        self.assertEqual(finish, full.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, full.usage.completion_tokens)
        self.assertEqual(usage.prompt_tokens, full.usage.prompt_tokens)

    def test_streaming_several_prompts_and_choices(self):
        prompts = [g["prompt"] for g in self.greedy[:3]]
        kw = dict(prompt=prompts, max_tokens=10, temperature=0.7, seed=3, n=2, logprobs=1)
        full = self.complete(**kw)
        texts, lps, finish = {}, {}, {}
        for chunk in self.complete(stream=True, **kw):
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + c.text
                lps.setdefault(c.index, []).extend(c.logprobs.token_logprobs)
                finish[c.index] = c.finish_reason or finish.get(c.index)
        for c in full.choices:
            self.assertEqual(texts[c.index], c.text)
            self.assertEqual(lps[c.index], c.logprobs.token_logprobs)
            self.assertEqual(finish[c.index], c.finish_reason)

    def test_streaming_echo_sends_the_prompt_first(self):
        kw = dict(prompt="Thou shalt not", max_tokens=6, temperature=0, logprobs=2, echo=True)
        full = self.complete(**kw)
        chunks = [ch for ch in self.complete(stream=True, **kw) if ch.choices]
        first = chunks[0].choices[0]
        self.assertTrue(first.text.startswith("Thou shalt not"))
        self.assertIsNone(first.logprobs.token_logprobs[0])
        self.assertEqual("".join(ch.choices[0].text for ch in chunks), full.choices[0].text)
        streamed = [x for ch in chunks for x in ch.choices[0].logprobs.token_logprobs]
        self.assertEqual(streamed, full.choices[0].logprobs.token_logprobs)

    def test_logprobs_and_echo(self):
        prompt = "For God so loved the world"
        r = self.complete(prompt=prompt, max_tokens=5, temperature=0, logprobs=3, echo=True)
        c = r.choices[0]
        lp = c.logprobs
        n_prompt = r.usage.prompt_tokens
        self.assertTrue(c.text.startswith(prompt))
        self.assertEqual(len(lp.tokens), n_prompt + 5)
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        self.assertEqual("".join(lp.tokens), c.text)
        for tok, chosen, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
            self.assertLessEqual(chosen, 0.0)
            self.assertIn(tok, top)
            self.assertGreaterEqual(len(top), 3)
        # Greedy: each generated token is the most likely one.
        for chosen, top in zip(lp.token_logprobs[n_prompt:], lp.top_logprobs[n_prompt:]):
            self.assertEqual(chosen, max(top.values()))
        # Scoring alone (max_tokens 0) gives the same prompt logprobs, and the generated part agrees with a plain
        # logprobs request.
        s = self.complete(prompt=prompt, max_tokens=0, temperature=0, logprobs=1, echo=True)
        self.assertEqual(s.choices[0].logprobs.token_logprobs, lp.token_logprobs[:n_prompt])
        g = self.complete(prompt=prompt, max_tokens=5, temperature=0, logprobs=3)
        self.assertEqual(g.choices[0].logprobs.token_logprobs, lp.token_logprobs[n_prompt:])

    def test_n_choices_and_seeds(self):
        kw = dict(prompt="Blessed are", max_tokens=12, temperature=1.0, top_p=0.95, seed=1234, n=3)
        a = self.complete(**kw)
        b = self.complete(**kw)
        self.assertEqual([c.text for c in a.choices], [c.text for c in b.choices])
        self.assertEqual(len({c.text for c in a.choices}), 3)
        c = self.complete(**{**kw, "seed": 99})
        self.assertNotEqual([x.text for x in a.choices], [x.text for x in c.choices])

    def test_stop_strings(self):
        full = self.complete(prompt="In the beginning", max_tokens=40, temperature=0).choices[0].text
        stop = full[len(full) // 2:len(full) // 2 + 3]
        r = self.complete(prompt="In the beginning", max_tokens=40, temperature=0, stop=[stop, "zzzz"])
        self.assertEqual(r.choices[0].text, full[:full.index(stop)])
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_chat(self):
        messages = [{"role": "system", "content": "Thou art a scribe."},
                    {"role": "user", "content": "Who begat Enoch?"}]
        r = self.client.chat.completions.create(model=su.MODEL_ID, messages=messages, max_tokens=20, temperature=0,
                                                logprobs=True, top_logprobs=2)
        c = r.choices[0]
        self.assertEqual(c.message.role, "assistant")
        self.assertTrue(c.message.content)
        self.assertEqual(c.finish_reason, "length")
        self.assertEqual(len(c.logprobs.content), 20)
        self.assertEqual("".join(t.token for t in c.logprobs.content), c.message.content)
        for t in c.logprobs.content:
            self.assertEqual(len(t.top_logprobs), 2)
            self.assertEqual(t.logprob, t.top_logprobs[0].logprob)  # greedy
        # The prompt is the chat template's rendering: /tokenize agrees on its length.
        status, tok = self.server.post("/tokenize", {"messages": messages})
        self.assertEqual(status, 200)
        self.assertEqual(r.usage.prompt_tokens, tok["count"])
        # Streaming gives the same text: role first, then content deltas.
        chunks = list(self.client.chat.completions.create(model=su.MODEL_ID, messages=messages, max_tokens=20,
                                                          temperature=0, stream=True))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual("".join(ch.choices[0].delta.content or "" for ch in chunks), c.message.content)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "length")

    def test_errors_raise_sdk_exceptions(self):
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        with self.assertRaises(openai.BadRequestError) as e:
            self.complete(prompt="x", max_tokens=10 ** 9)
        self.assertEqual(e.exception.code, "context_length_exceeded")


class ToolsReachTheTemplate(unittest.TestCase):
    """A copy of the demo model whose chat template prints the tools: what the server renders shows them."""

    def test_tools(self):
        with tempfile.TemporaryDirectory() as d:
            for f in os.listdir(su.DEMO_MODEL):
                if f != "chat_template.jinja":
                    os.symlink(os.path.join(su.DEMO_MODEL, f), os.path.join(d, f))
            with open(os.path.join(d, "chat_template.jinja"), "w", encoding="utf-8") as f:
                f.write("{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}"
                        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                        "{% if add_generation_prompt %}assistant:{% endif %}")
            server = su.Server("--model", d, "--max-memory", "64M", "--max-seqs", "4")
            try:
                client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
                tools = [{"type": "function", "function": {"name": "smite_philistines", "parameters": {}}}]
                messages = [{"role": "user", "content": "Go up"}]
                with_tools = client.chat.completions.create(model=os.path.basename(d), messages=messages, tools=tools,
                                                           max_tokens=1, temperature=0)
                without = client.chat.completions.create(model=os.path.basename(d), messages=messages, max_tokens=1,
                                                        temperature=0)
                status, tok = server.post("/tokenize", {"prompt": "TOOLS:smite_philistines;\n", "add_special_tokens": False})
                self.assertEqual(status, 200)
                self.assertEqual(with_tools.usage.prompt_tokens - without.usage.prompt_tokens, tok["count"])
                self.assertEqual(server.stop(), 0)
            finally:
                server.__exit__()
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)

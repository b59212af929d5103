"""Bad input: every kind gets an OpenAI-style JSON error ({"error": {"message", "type", "param", "code"}}) with the
right HTTP status, and the server keeps serving. Also: too many requests in flight (429), and a client that hangs up
mid-stream frees its sequence."""
import http.client
import json
import unittest
import urllib.parse

import server_util as su

C, CHAT = "/v1/completions", "/v1/chat/completions"
OK = {"prompt": "In the beginning", "max_tokens": 2, "temperature": 0}
MSG = [{"role": "user", "content": "Hail"}]

# (name, path, body as JSON-able or raw bytes, status, code, param) — param None: not checked.
CASES = [
    ("malformed JSON", C, b'{"prompt": "x", ', 400, "invalid_json", None),
    ("body is not an object", C, b"[1, 2, 3]", 400, "invalid_json", None),
    ("empty body", C, b"", 400, "invalid_json", None),
    ("bad UTF-8 in the body", C, b'{"prompt": "caf\xc3\x28 \xff"}', 400, "invalid_utf8", None),
    ("prompt missing", C, {"max_tokens": 3}, 400, "missing_required_parameter", "prompt"),
    ("prompt is a number", C, {"prompt": 12}, 400, "invalid_type", "prompt"),
    ("prompt is an empty string", C, {"prompt": ""}, 400, "invalid_value", "prompt"),
    ("prompt is an empty list", C, {"prompt": []}, 400, "invalid_value", "prompt"),
    ("prompt mixes strings and ids", C, {"prompt": ["a", [1, 2]]}, 400, "invalid_type", "prompt"),
    ("negative token id", C, {"prompt": [5, -1, 7]}, 400, "invalid_token_id", "prompt"),
    ("token id past the vocabulary", C, {"prompt": [5, 4096]}, 400, "invalid_token_id", "prompt"),
    ("token id is a float", C, {"prompt": [5, 1.5]}, 400, "invalid_type", "prompt"),
    ("token id is a string", C, {"prompt": [[5, "6"]]}, 400, "invalid_type", "prompt"),
    ("negative max_tokens", C, {**OK, "max_tokens": -1}, 400, "invalid_value", "max_tokens"),
    ("huge max_tokens", C, {**OK, "max_tokens": 10 ** 12}, 400, "context_length_exceeded", "max_tokens"),
    ("max_tokens past int64", C, {**OK, "max_tokens": 2 ** 70}, 400, "context_length_exceeded", "max_tokens"),
    ("max_tokens is a string", C, {**OK, "max_tokens": "10"}, 400, "invalid_type", "max_tokens"),
    ("prompt longer than the context", C, {"prompt": [7] * 5000, "max_tokens": 1}, 400,
     "context_length_exceeded", "prompt"),
    ("prompt + max_tokens past the context", C, {"prompt": [7] * 4000, "max_tokens": 200}, 400,
     "context_length_exceeded", "max_tokens"),
    ("negative temperature", C, {**OK, "temperature": -0.5}, 400, "invalid_value", "temperature"),
    ("temperature is a string", C, {**OK, "temperature": "hot"}, 400, "invalid_type", "temperature"),
    ("top_p of 0", C, {**OK, "top_p": 0}, 400, "invalid_value", "top_p"),
    ("top_p above 1", C, {**OK, "top_p": 1.5}, 400, "invalid_value", "top_p"),
    ("top_k below -1", C, {**OK, "top_k": -2}, 400, "invalid_value", "top_k"),
    ("min_p above 1", C, {**OK, "min_p": 2}, 400, "invalid_value", "min_p"),
    ("n of 0", C, {**OK, "n": 0}, 400, "invalid_value", "n"),
    ("n too large", C, {**OK, "n": 100000}, 400, "invalid_value", "n"),
    ("logprobs too large", C, {**OK, "logprobs": 50}, 400, "invalid_value", "logprobs"),
    ("negative logprobs", C, {**OK, "logprobs": -1}, 400, "invalid_value", "logprobs"),
    ("logprobs is a string", C, {**OK, "logprobs": "yes"}, 400, "invalid_type", "logprobs"),
    ("stop is a number", C, {**OK, "stop": 5}, 400, "invalid_type", "stop"),
    ("stop holds a number", C, {**OK, "stop": ["a", 1]}, 400, "invalid_type", "stop"),
    ("stop holds an empty string", C, {**OK, "stop": [""]}, 400, "invalid_value", "stop"),
    ("too many stop strings", C, {**OK, "stop": [f"s{i}" for i in range(40)]}, 400, "invalid_value", "stop"),
    ("stop_token_ids outside the vocabulary", C, {**OK, "stop_token_ids": [99999]}, 400, "invalid_token_id",
     "stop_token_ids"),
    ("unknown model", C, {**OK, "model": "gpt-17"}, 404, "model_not_found", "model"),
    ("model is not a string", C, {**OK, "model": 3}, 400, "invalid_type", "model"),
    ("stream is not a boolean", C, {**OK, "stream": "yes"}, 400, "invalid_type", "stream"),
    ("stream_options without stream", C, {**OK, "stream_options": {"include_usage": True}}, 400, "invalid_value",
     "stream_options"),
    ("seed is a string", C, {**OK, "seed": "lucky"}, 400, "invalid_type", "seed"),
    ("echo is a number", C, {**OK, "echo": 1}, 400, "invalid_type", "echo"),
    ("presence_penalty unsupported", C, {**OK, "presence_penalty": 0.5}, 400, "unsupported_parameter",
     "presence_penalty"),
    ("logit_bias unsupported", C, {**OK, "logit_bias": {"5": 10}}, 400, "unsupported_parameter", "logit_bias"),
    ("suffix unsupported", C, {**OK, "suffix": "amen"}, 400, "unsupported_parameter", "suffix"),
    ("best_of other than n", C, {**OK, "best_of": 3}, 400, "unsupported_parameter", "best_of"),
    ("response_format json", C, {**OK, "response_format": {"type": "json_object"}}, 400, "unsupported_parameter",
     "response_format"),
    ("chat: messages missing", CHAT, {"max_tokens": 2}, 400, "missing_required_parameter", "messages"),
    ("chat: messages empty", CHAT, {"messages": []}, 400, "invalid_value", "messages"),
    ("chat: messages not a list", CHAT, {"messages": "hi"}, 400, "invalid_type", "messages"),
    ("chat: message not an object", CHAT, {"messages": ["hi"]}, 400, "invalid_type", "messages[0]"),
    ("chat: unknown role", CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_value",
     "messages[0].role"),
    ("chat: role missing", CHAT, {"messages": [{"content": "x"}]}, 400, "missing_required_parameter",
     "messages[0].role"),
    ("chat: user content missing", CHAT, {"messages": [{"role": "user"}]}, 400, "missing_required_parameter",
     "messages[0].content"),
    ("chat: content is a number", CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, "invalid_type",
     "messages[0].content"),
    ("chat: image content part", CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]}, 400, "unsupported_parameter",
     "messages[0].content"),
    ("chat: top_logprobs without logprobs", CHAT, {"messages": MSG, "top_logprobs": 2}, 400, "invalid_value",
     "top_logprobs"),
    ("chat: tools not a list", CHAT, {"messages": MSG, "tools": {"a": 1}}, 400, "invalid_type", "tools"),
    ("chat: echo unsupported", CHAT, {"messages": MSG, "echo": True}, 400, "unsupported_parameter", "echo"),
    ("chat: max_tokens past the context", CHAT, {"messages": MSG, "max_tokens": 5000}, 400,
     "context_length_exceeded", "max_tokens"),
    ("detokenize: ids outside the vocabulary", "/detokenize", {"tokens": [1, 70000]}, 400, "invalid_token_id",
     "tokens"),
    ("tokenize: prompt not a string", "/tokenize", {"prompt": 3}, 400, "invalid_type", "prompt"),
]


def check_error(test, status, data, want_status, want_code, want_param, name):
    test.assertEqual(status, want_status, f"{name}: {data!r}")
    body = json.loads(data)
    err = body["error"]
    test.assertEqual(set(err), {"message", "type", "param", "code"}, name)
    test.assertIsInstance(err["message"], str)
    test.assertTrue(err["message"], name)
    test.assertEqual(err["code"], want_code, f"{name}: {err}")
    test.assertEqual(err["type"], "invalid_request_error" if want_status < 500 and want_status != 429
                     else err["type"], name)
    if want_param is not None:
        test.assertEqual(err["param"], want_param, f"{name}: {err}")


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = su.Server("--model", su.DEMO_MODEL, "--max-memory", "128M", "--max-seqs", "8",
                               "--max-body-bytes", "100000")

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0
        cls.server.__exit__()

    def still_serves(self):
        status, body = self.server.post(C, OK)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["usage"]["completion_tokens"], 2)

    def test_each_kind(self):
        self.assertGreaterEqual(len(CASES), 30)
        for name, path, body, status, code, param in CASES:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            got, data = self.server.request("POST", path, raw=raw)
            check_error(self, got, data, status, code, param, name)
        self.still_serves()

    def test_protocol_level(self):
        got, data = self.server.request("POST", C, raw=b"{" + b" " * 200000 + b"}")
        check_error(self, got, data, 413, "request_too_large", None, "oversized body")
        got, data = self.server.request("GET", "/v1/nothing-here")
        check_error(self, got, data, 404, "not_found", None, "unknown route")
        got, data = self.server.request("GET", C)
        check_error(self, got, data, 405, "method_not_allowed", None, "GET on a POST route")
        self.still_serves()

    def test_stream_errors_come_as_json_before_streaming(self):
        got, data = self.server.request("POST", C, {"prompt": [1] * 5000, "stream": True})
        check_error(self, got, data, 400, "context_length_exceeded", "prompt", "stream, prompt too long")
        self.still_serves()

    def test_client_that_hangs_up_mid_stream_frees_its_sequence(self):
        base = self.server.metrics()
        self.assertEqual(base["hyrax_running_sequences"], 0)
        conn = http.client.HTTPConnection(urllib.parse.urlparse(self.server.url).netloc, timeout=60)
        conn.request("POST", C, body=json.dumps({"prompt": "And Noah", "max_tokens": 3000, "ignore_eos": True,
                                                 "stream": True}), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        got = 0
        while got < 5:
            if resp.readline().startswith(b"data: "):
                got += 1
        m = self.server.metrics()
        self.assertEqual(m["hyrax_running_sequences"], 1)
        self.assertGreater(m["hyrax_kv_blocks_used"], 0)
        resp.close()
        conn.close()  # gone mid-stream: the server's next writes fail and it cancels the request
        m = self.server.wait_for(lambda m: m["hyrax_requests_cancelled_total"] > base["hyrax_requests_cancelled_total"]
                                 and m["hyrax_running_sequences"] == 0, "the request to be cancelled")
        self.assertEqual(m["hyrax_kv_blocks_used"], 0)
        self.assertEqual(m["hyrax_state_slots_used"], 0)
        self.assertLess(m["hyrax_generation_tokens_total"] - base["hyrax_generation_tokens_total"], 3000)
        self.still_serves()


class TooManyInFlight(unittest.TestCase):
    def test_429_then_serves_again(self):
        server = su.Server("--model", su.DEMO_MODEL, "--max-memory", "64M", "--max-seqs", "1",
                           "--max-concurrent", "2")
        try:
            netloc = urllib.parse.urlparse(server.url).netloc
            streams = []
            for _ in range(2):  # one runs, one waits for the only slot: both are in flight
                conn = http.client.HTTPConnection(netloc, timeout=60)
                conn.request("POST", C, body=json.dumps({"prompt": "Amen", "max_tokens": 4000, "ignore_eos": True,
                                                         "stream": True}),
                             headers={"Content-Type": "application/json"})
                streams.append((conn, conn.getresponse()))
            streams[0][1].readline()
            status, data = server.request("POST", C, OK)
            check_error(self, status, data, 429, "too_many_requests", None, "third request")
            self.assertEqual(json.loads(data)["error"]["type"], "rate_limit_error")
            for conn, resp in streams:
                resp.close()
                conn.close()
            server.wait_for(lambda m: m["hyrax_requests_in_flight"] == 0 and m["hyrax_running_sequences"] == 0,
                            "the abandoned streams to be cancelled")
            self.assertEqual(server.metrics()["hyrax_requests_rejected_total"], 1)
            status, body = server.post(C, OK)
            self.assertEqual(status, 200, body)
            self.assertEqual(server.stop(), 0)
        finally:
            server.__exit__()


if __name__ == "__main__":
    unittest.main(verbosity=2)

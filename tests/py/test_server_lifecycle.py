"""The server's life: the capacity it prints at startup is exact (a request fills every KV block without preemption),
and SIGTERM drains (requests in flight finish, new ones get 503) or, past --drain-timeout, cancels, exiting 0."""
import http.client
import json
import os
import signal
import subprocess
import time
import unittest
import urllib.parse

import server_util as su


def open_stream(server, body):
    conn = http.client.HTTPConnection(urllib.parse.urlparse(server.url).netloc, timeout=120)
    conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    return conn, resp


def read_events(resp):
    events = []
    for raw in resp:
        line = raw.rstrip(b"\r\n")
        if line == b"data: [DONE]":
            events.append("[DONE]")
            break
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
    return events


class Capacity(unittest.TestCase):
    def test_printed_capacity_is_exact_and_fills(self):
        probe = su.Server("--model", su.DEMO_MODEL, "--max-seqs", "4", "--max-seq-len", "256", "--max-memory", "64M")
        try:
            status, health = probe.get_json("/health")
            self.assertEqual(status, 200)
            cap = health["capacity"]
            self.assertEqual(probe.capacity["sequences"], cap["sequences"])
            self.assertEqual(probe.capacity["kv_tokens"], cap["kv_tokens"])
            self.assertEqual(probe.stop(), 0)
        finally:
            probe.__exit__()
        # A budget of exactly 4 sequences' state and 32 KV blocks, plus less than one more block.
        block = cap["block_size"] * cap["kv_bytes_per_token"]
        budget = 4 * cap["slot_bytes"] + 32 * block + block - 1
        server = su.Server("--model", su.DEMO_MODEL, "--max-seqs", "4", "--max-seq-len", "256",
                           "--max-memory", str(budget))
        try:
            self.assertEqual(server.capacity, dict(sequences=4, kv_tokens=32 * cap["block_size"], blocks=32,
                                                   block_size=cap["block_size"], context=256))
            status, health = server.get_json("/health")
            self.assertLessEqual(health["capacity"]["pool_bytes"], budget)
            self.assertEqual(health["capacity"]["pool_bytes"], 4 * cap["slot_bytes"] + 32 * block)
            # Four choices of one request each cache a quarter of the pool (prompt + max_tokens - 1 positions).
            per_seq = 8 * cap["block_size"]
            prompt = list(range(100, 128))
            status, body = server.post("/v1/completions", {"prompt": prompt, "n": 4, "max_tokens": per_seq - 28 + 1,
                                                           "ignore_eos": True, "temperature": 1.0, "seed": 7})
            self.assertEqual(status, 200, body)
            self.assertEqual(body["usage"]["completion_tokens"], 4 * (per_seq - 28 + 1))
            m = server.metrics()
            self.assertEqual(m["hyrax_kv_blocks_total"], 32)
            self.assertEqual(m["hyrax_kv_blocks_used_peak"], 32)  # every block held at once
            self.assertEqual(m["hyrax_running_sequences_peak"], 4)
            self.assertEqual(m["hyrax_preemptions_total"], 0)
            self.assertEqual(m["hyrax_kv_blocks_used"], 0)
            self.assertEqual(m["hyrax_pool_bytes"], health["capacity"]["pool_bytes"])
            # One position more than the context is refused.
            status, body = server.post("/v1/completions", {"prompt": prompt, "max_tokens": 256 - 28 + 1})
            self.assertEqual(status, 400)
            self.assertEqual(body["error"]["code"], "context_length_exceeded")
            self.assertEqual(server.stop(), 0)
        finally:
            server.__exit__()


class Sigterm(unittest.TestCase):
    def test_drains_in_flight_requests_and_exits_0(self):
        server = su.Server("--model", su.DEMO_MODEL, "--max-memory", "64M", "--max-seqs", "4")
        try:
            conn, resp = open_stream(server, {"prompt": "And Jacob", "max_tokens": 2000, "ignore_eos": True})
            resp.readline()
            server.proc.send_signal(signal.SIGTERM)
            # The listener still answers while draining: /health turns 503, and so do new requests.
            deadline = time.monotonic() + 60
            while server.request("GET", "/health")[0] != 503:
                self.assertLess(time.monotonic(), deadline, "the server never started draining")
                time.sleep(0.01)
            status, data = server.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1})
            self.assertEqual(status, 503, data)
            self.assertEqual(json.loads(data)["error"]["code"], "shutting_down")
            events = read_events(resp)
            conn.close()
            self.assertEqual(events[-1], "[DONE]")
            chunks = [e for e in events[:-1] if e["choices"]]
            self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
            self.assertEqual(len(chunks) + 1, 2000)  # the first chunk was read before SIGTERM
            self.assertEqual(server.proc.wait(timeout=60), 0)
            self.assertTrue(any("stopped (" in line for line in server.lines), server.lines)
        finally:
            server.__exit__()

    def test_cancels_after_the_drain_timeout_and_exits_0(self):
        server = su.Server("--model", su.DEMO_MODEL, "--max-memory", "64M", "--max-seqs", "4", "--drain-timeout", "0")
        try:
            conn, resp = open_stream(server, {"prompt": "And Esau", "max_tokens": 4000, "ignore_eos": True})
            resp.readline()
            server.proc.send_signal(signal.SIGTERM)
            events = read_events(resp)
            conn.close()
            self.assertEqual(events[-1], "[DONE]")
            self.assertEqual(events[-2]["error"]["code"], "shutting_down")
            self.assertEqual(server.proc.wait(timeout=60), 0)
        finally:
            server.__exit__()


class BenchServe(unittest.TestCase):
    """`hyrax bench serve` runs end to end (a smoke run, nothing timed): the demo model, and a dummy-weight model
    without a tokenizer (token-id prompts only, as the GPU figure is taken)."""

    def run_bench(self, *args):
        out = subprocess.run([su.HYRAX_BIN, "bench", "serve", "--threads", "1", "-c", "3", "-n", "6",
                              "--input-len", "70", "--output-len", "9", *args],
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("requests: 6 ok, 0 failed", out.stdout)
        self.assertIn("output: 54 tokens", out.stdout)
        for name in ("TTFT", "ITL", "TPOT"):
            self.assertIn(name, out.stdout)
        return out.stdout

    def test_demo_model(self):
        self.run_bench("--model", su.DEMO_MODEL)

    def test_dummy_weights(self):
        config = os.path.join(su.SOURCE_DIR, "tests", "fixtures", "nope_mha_f32", "config.json")
        self.run_bench("--config", config, "--dummy-weights")


if __name__ == "__main__":
    unittest.main(verbosity=2)

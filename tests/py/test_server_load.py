"""A bounded load test: 64 concurrent streaming clients against a server with fewer sequence slots than clients
(so requests queue and batches keep changing). Every answer — greedy and seeded sampling, text, token ids and
logprobs — equals the same request served alone, byte for byte; no request is lost; the state pool is back to its
baseline afterwards. The pool is sized so that nothing is preempted (a recomputed sequence is equal only to float
tolerance; the test checks that no preemption happened)."""
import http.client
import json
import random
import threading
import unittest
import urllib.parse

import server_util as su

CLIENTS = 64


def make_requests():
    rng = random.Random(2026)
    words = ("and the LORD said unto Moses behold I will send thee into the land which I sware unto "
             "thy fathers to give them a land flowing with milk and honey").split()
    reqs = []
    for i in range(CLIENTS):
        if i % 4 == 3:  # token-id prompts, some longer than two prefill pieces
            prompt = [rng.randrange(2, 4096) for _ in range(rng.choice([1, 63, 64, 65, 200, 300]))]
        else:
            prompt = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 60)))
        body = {"model": su.MODEL_ID, "prompt": prompt, "max_tokens": rng.randrange(8, 48), "logprobs": 2,
                "return_token_ids": True, "stream": True, "stream_options": {"include_usage": True}}
        if i % 5 == 4:
            body.update(temperature=0.9, top_p=0.95, seed=1000 + i)
        else:
            body.update(temperature=0)
        if i % 7 == 0:
            body["stop"] = ["LORD", "\n\n"]
        reqs.append(body)
    return reqs


def stream(netloc, body, barrier=None):
    """Streams one request; returns (text bytes, token ids, logprobs, finish, usage)."""
    conn = http.client.HTTPConnection(netloc, timeout=300)
    if barrier:
        barrier.wait()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    text, ids, lps, finish, usage, done = b"", [], [], None, None, False
    for raw in resp:
        line = raw.rstrip(b"\r\n")
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            done = True
            break
        chunk = json.loads(line[6:])
        assert "error" not in chunk, chunk
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk["choices"]:
            text += c["text"].encode("utf-8")
            ids += c["token_ids"]
            lps += c["logprobs"]["token_logprobs"]
            finish = c["finish_reason"] or finish
    conn.close()
    assert done, "stream ended without [DONE]"
    return text, ids, lps, finish, usage


class Load(unittest.TestCase):
    def test_64_concurrent_streams_equal_alone(self):
        server = su.Server("--model", su.DEMO_MODEL, "--max-seqs", "24", "--max-seq-len", "1024",
                           "--prefill-chunk", "128", "--max-memory", "512M", threads=2)
        try:
            netloc = urllib.parse.urlparse(server.url).netloc
            reqs = make_requests()
            base = server.metrics()
            alone = [stream(netloc, r) for r in reqs]

            results = [None] * CLIENTS
            errors = []
            barrier = threading.Barrier(CLIENTS)

            def client(i):
                try:
                    results[i] = stream(netloc, reqs[i], barrier)
                except Exception as e:  # noqa: BLE001 - collected and reported below
                    errors.append((i, repr(e)))

            threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=600)
            self.assertFalse(errors, errors)
            self.assertTrue(all(r is not None for r in results), "a request was lost")
            for i, (a, b) in enumerate(zip(alone, results)):
                self.assertEqual(b[0], a[0], f"request {i}: text differs")
                self.assertEqual(b[1], a[1], f"request {i}: token ids differ")
                self.assertEqual(b[2], a[2], f"request {i}: logprobs differ")
                self.assertEqual(b[3], a[3], f"request {i}: finish_reason differs")
                self.assertEqual(b[4], a[4], f"request {i}: usage differs")

            # A stream's HTTP handler lets go of its place just after the client has read [DONE].
            m = server.wait_for(lambda m: m["hyrax_requests_in_flight"] == 0, "the HTTP handlers to finish")
            self.assertEqual(m["hyrax_preemptions_total"], 0, "preemption would make the comparison inexact")
            self.assertEqual(m["hyrax_requests_finished_total"] - base["hyrax_requests_finished_total"], 2 * CLIENTS)
            self.assertEqual(m["hyrax_running_sequences_peak"], 24, "the clients never filled every slot")
            for gauge in ("hyrax_running_sequences", "hyrax_waiting_sequences", "hyrax_queue_depth",
                          "hyrax_kv_blocks_used", "hyrax_state_slots_used", "hyrax_requests_in_flight",
                          "hyrax_pool_used_bytes"):
                self.assertEqual(m[gauge], base[gauge], gauge)
            self.assertGreater(m["hyrax_kv_blocks_used_peak"], 0)
            self.assertEqual(server.stop(), 0)
        finally:
            server.__exit__()


if __name__ == "__main__":
    unittest.main(verbosity=2)

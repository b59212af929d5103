"""Shared pieces of the server tests: start `hyrax serve` on a free port (the server picks it and prints it), read
its startup lines and metrics, stop it with SIGTERM. Every test file is one ctest and starts its own server."""
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

SOURCE_DIR = os.environ.get("HYRAX_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
HYRAX_BIN = os.environ.get("HYRAX_BIN", os.path.join(SOURCE_DIR, "build", "hyrax"))
DEMO_MODEL = os.path.join(SOURCE_DIR, "models", "kjv-hybrid")
MODEL_ID = "kjv-hybrid"


class Server:
    """A running `hyrax serve`. Use as a context manager; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, *args, threads=1):
        cmd = [HYRAX_BIN, "serve", "--port", "0", "--threads", str(threads), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = []
        self.capacity = None
        self.url = None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("capacity:"):
                self.capacity = parse_capacity(line)
            m = re.search(r"listening on (http://[^ ]+)", line)
            if m:
                self.url = m.group(1)
                break
        if self.url is None:
            self.proc.wait(timeout=30)
            raise RuntimeError("hyrax serve did not start:\n" + "\n".join(self.lines))
        # Keep reading its output so that the pipe never fills.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self.proc.stdout.close()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.proc.stdout.closed:
            self._reader.join(timeout=10)
            self.proc.stdout.close()

    # HTTP helpers (urllib: no extra dependency, exact bytes).
    def request(self, method, path, body=None, raw=None, headers=None, timeout=120):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None and not (headers and "Content-Type" in headers):
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(self, path, body, **kw):
        status, data = self.request("POST", path, body, **kw)
        return status, json.loads(data)

    def get_json(self, path):
        status, data = self.request("GET", path)
        return status, json.loads(data)

    def metrics(self):
        status, data = self.request("GET", "/metrics")
        assert status == 200, status
        return parse_metrics(data.decode())

    def wait_for(self, predicate, what, timeout=60):
        """Polls the metrics until predicate(metrics) holds (bounded: fails after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if predicate(m):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; metrics: {m}")
            time.sleep(0.02)


def parse_capacity(line):
    m = re.search(r"capacity: (\d+) sequences .*?, (\d+) KV tokens \((\d+) blocks of (\d+).* = .* state pool; "
                  r"context (\d+) positions", line)
    assert m, line
    seqs, tokens, blocks, block, ctx = map(int, m.groups())
    return dict(sequences=seqs, kv_tokens=tokens, blocks=blocks, block_size=block, context=ctx)


def parse_metrics(text):
    """{name: value} for the unlabelled-or-model-labelled samples; histogram buckets keep their le label."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        le = re.search(r'le="([^"]+)"', name_labels)
        out[name + (f"[{le.group(1)}]" if le else "")] = float(value)
    return out


def sse_events(resp_lines):
    """Decodes SSE `data:` payloads from an iterable of byte lines; stops at [DONE]."""
    for raw in resp_lines:
        line = raw.decode("utf-8").rstrip("\r\n") if isinstance(raw, bytes) else raw.rstrip("\r\n")
        if not line.startswith("data: "):
            continue
        payload = line[len("data: "):]
        if payload == "[DONE]":
            return
        yield json.loads(payload)

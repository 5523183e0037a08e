"""Helpers of the teacher tests and benchmark: a tiny GPT-2 trained here on event prompts, and a
small OpenAI-compatible server on a loopback port with failure modes.

The fake server answers ``POST /v1/completions`` and ``POST /v1/chat/completions`` the way the
protocol does (``n`` choices, log-probabilities when asked). Event prompts (ending in
``Event:``) get events that start with PersonX; inference prompts get an answer that names the
query's person, so the test can see names mapped back. ``script`` is a list of per-request
behaviours consumed in order (``429``, ``500``, ``"slow"``, ``"garbage"``, ``"ok"``); once it is
empty every request succeeds after ``delay`` seconds.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_SITUATION = re.compile(r"Situation: (\w+)")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the listen backlog: many clients connect at once


class FakeOpenAI:
    def __init__(self, delay: float = 0.0, retry_after: str | None = "0") -> None:
        self.delay = delay
        self.retry_after = retry_after
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.counter = 0
        handler = self._handler()
        self.server = _Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next_behaviour(self) -> Any:
        with self.lock:
            return self.script.pop(0) if self.script else "ok"

    def _text(self, prompt: str) -> str:
        with self.lock:
            self.counter += 1
            k = self.counter
        if prompt.rstrip().endswith("Event:"):
            return f" PersonX tries hobby number {k}\n6. Event: PersonX"
        names = _SITUATION.findall(prompt)
        name = names[-1] if names else "Someone"
        return f" to phone {name}'s friend {k}\nmore"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every keep-alive response.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    auth = self.headers.get("Authorization")
                    fake.requests.append({"path": self.path, "auth": auth, **request})
                behaviour = fake._next_behaviour()
                if behaviour == "slow":
                    time.sleep(5)
                elif fake.delay:
                    time.sleep(fake.delay)
                if behaviour in (429, 500, 503):
                    headers = {"Content-Type": "application/json"}
                    if fake.retry_after is not None:
                        headers["Retry-After"] = fake.retry_after
                    body = json.dumps({"error": {"message": f"fake {behaviour}"}}).encode()
                    self._send(int(behaviour), body, headers)
                    return
                if behaviour == "garbage":
                    self._send(200, b"<html>not an API</html>", {"Content-Type": "text/html"})
                    return
                chat = self.path.endswith("/chat/completions")
                prompt = request["messages"][-1]["content"] if chat else request["prompt"]
                choices = []
                for i in range(int(request.get("n", 1))):
                    text = fake._text(prompt)
                    stop = request.get("stop") or []
                    for s in stop:
                        if s in text:
                            text = text[: text.index(s)]
                    logprobs = [-0.25 * (i + 1), -0.5 * (i + 1)]
                    if chat:
                        lp = None
                        if request.get("logprobs"):
                            lp = {"content": [{"token": "x", "logprob": v, "bytes": None,
                                               "top_logprobs": []} for v in logprobs]}  # fmt: skip
                        message = {"role": "assistant", "content": text}
                        choice = {"index": i, "finish_reason": "stop", "message": message}
                        choices.append({**choice, "logprobs": lp})
                    else:
                        lp = None
                        if request.get("logprobs"):
                            lp = {"tokens": ["x", "y"], "token_logprobs": logprobs,
                                  "top_logprobs": None, "text_offset": [0, 1]}  # fmt: skip
                        choices.append({"index": i, "text": text, "finish_reason": "stop",
                                        "logprobs": lp})  # fmt: skip
                body = {
                    "id": "fake",
                    "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()),
                    "model": request.get("model", "fake"),
                    "choices": choices,
                }
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

        return Handler


def train_tiny_gpt2(folder: Path, steps: int = 40) -> Path:
    """A 2-layer GPT-2 and a BPE tokenizer trained here on event prompts, saved like a hub
    model; after a few dozen steps it continues ``N. Event:`` with ``PersonX …``."""
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from app.teacher.prompts import DEFAULT_EVENTS, default_template, event_prompt

    rng = random.Random(0)
    template = default_template("events")
    texts = []
    for _ in range(64):
        prompt = event_prompt(template, list(DEFAULT_EVENTS), 3, rng)
        texts.append(prompt.text + " " + rng.choice(DEFAULT_EVENTS) + "\n")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=64, n_layer=2, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokenizer.pad_token = tokenizer.eos_token
    model.train()
    for step in range(steps):
        batch = tokenizer(
            texts[(step * 8) % 64 : (step * 8) % 64 + 8], return_tensors="pt", padding=True
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.pad_token = None  # saved without one: the loader must add it
    tokenizer.save_pretrained(folder)
    return folder


def _serve_forever() -> None:
    """``python -m tests.teacher_helpers --delay 0.2``: the fake server in its own process
    (the benchmark keeps it off the client's interpreter); prints its base URL."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeOpenAI(delay=args.delay)
    print(server.base_url, flush=True)
    server.server.serve_forever()


if __name__ == "__main__":
    _serve_forever()

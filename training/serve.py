"""A small OpenAI-compatible server for a `trajlake train` output, on the CPU.

`trajlake dagger serve --model runs/tiny/model` serves a Hugging Face model directory at
`POST /v1/chat/completions` (non-streaming) and `GET /v1/models`, so that a laptop or a test
can put a trained student in the DAgger loop. The conversation is rendered with the model's own
chat template (tools included, as `trajlake train` rendered its samples) and generated with
`transformers`; the reply is the decoded text as `content`, and tool calls are read from it by
the client (`tool_call_parse: auto`), as from llama.cpp. Usage counts real tokens.

It answers one request at a time and is meant for small models; serve real students with vLLM
(`vllm serve runs/my-student/model --served-model-name student`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from trajlake.teacher.loopback import LoopbackServer
from trajlake.training.chat import template_inputs


class StudentServer:
    """The running server; use as a context manager or call close()."""

    def __init__(self, model_dir: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.name = self.model_dir.parent.name if self.model_dir.name == "model" else "student"
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        self.model.eval()
        self._generate = threading.Lock()  # one generation at a time
        self._server = LoopbackServer(_Handler, self, host, port)

    @property
    def url(self) -> str:
        return self._server.url

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> StudentServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """A chat completion for an OpenAI request body."""
        import torch

        messages, tools = template_inputs(request["messages"], request.get("tools"))
        ids = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        limit = int(request.get("max_tokens") or request.get("max_completion_tokens") or 256)
        temperature = float(request.get("temperature", 1.0) or 0.0)
        sampling = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
            sampling["top_p"] = float(request.get("top_p", 1.0))
        with self._generate, torch.no_grad():
            if "seed" in request:
                torch.manual_seed(int(request["seed"]))
            out = self.model.generate(
                torch.tensor([ids]),
                max_new_tokens=limit,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                **sampling,
            )
        new = out[0, len(ids) :].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if len(new) >= limit else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": len(ids),
                "completion_tokens": len(new),
                "total_tokens": len(ids) + len(new),
            },
        }


class _Handler(BaseHTTPRequestHandler):
    server_version = "trajlake-student/1"

    def log_message(self, *args: Any) -> None:  # quiet: tests and demos read stdout
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.server.owner.name}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length))
            self._send(200, self.server.owner.complete(request))
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, {"error": {"message": f"bad request: {e}", "code": 400}})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

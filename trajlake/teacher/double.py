r"""A scripted, OpenAI-compatible teacher: a real HTTP server for tests, demos and benchmarks.

Run as: `trajlake teacher-double --script FILE [--port 8000] [--latency 0.2]`
(or `python -m trajlake.teacher.double …`); it prints its base URL and serves until SIGTERM/SIGINT.

Endpoints: `POST /v1/chat/completions` (non-streaming) and `GET /v1/models`. Usage is counted
roughly (4 characters a token). Answers are stateless: the turn given is derived from the request
alone, so any number of concurrent conversations can share one server.

Script format (YAML or JSON)::

    model: teacher                       # what GET /v1/models lists (any model name is accepted)
    sessions:                            # tried in order; the first whose regex matches answers
      - name: self_eval
        match: "(?i)aligned with the request"
        match_on: last_user              # first_user (default) | last_user | system | all
        turns: [{content: "yes"}]
      - name: agent
        match: 'function `(?P<function>\w+)` in `(?P<path>[^`]+)`'  # single quotes: \ as is
        reasoning_inline: false          # true: reasoning inline as <think>…</think> in content
        fail: {status: 500, times: 2}    # optional: fail each turn's first 2 requests
        hang_s: 0                        # optional: wait this long before every answer
        turns:
          - reasoning: "Look first."     # sent as reasoning_content (or inline, see above)
            tool_calls:
              - name: bash
                arguments: {command: "grep -n 'def {{function}}' {{path}}"}
          - tool_calls: [{name: bash, arguments: '{"command": "ls"'}]   # raw string: malformed
            reasoning_inline: true       # a turn may override reasoning_inline, fail and hang_s
          - content: "Done."

The turn given is `turns[k]`, k being the number of assistant messages after the matched message
(the first or last user message, the system message; for `all`, every message's text joined and
all assistant messages). Regexes are searched with DOTALL; `{{name}}` in a turn's reasoning,
content or tool-call arguments is replaced, verbatim, by the named group `name` of the match.
`fail` makes the first `times` requests for a turn of one conversation (same messages) answer
`status` (after `hang_s`, if given); retries of that request then succeed. A request that no
session matches, or that is past a session's last turn, gets HTTP 400 saying so.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from importlib.resources import files
from pathlib import Path
from typing import Any

from trajlake.errors import TeacherError
from trajlake.teacher.accounting import estimate_tokens
from trajlake.teacher.loopback import ClosingServer, LoopbackServer
from trajlake.teacher.script import Match, Script, find_session, load_script, message_text, render

UNMATCHED = "<unmatched>"


def demo_script_path(name: str = "demo") -> Path:
    """A script shipped with trajlake (an agent, a self-evaluation, a PR writer): `demo` for
    the bash-only mini-bash scaffold, `demo-swe-agent` for SWE-agent's tools."""
    return Path(str(files("trajlake.teacher") / "scripts" / f"{name}.yaml"))


@dataclass(frozen=True)
class RequestRecord:
    """One request the double received (the last 1,000 are kept)."""

    session: str
    turn: int
    status: int
    authorization: str


def _error(status: int, message: str, kind: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": kind, "code": status}}


class DoubleServer:
    """The running double; use as a context manager or call close()."""

    def __init__(self, script: Script, host: str, port: int, latency_s: float) -> None:
        self.script = script
        self.latency_s = latency_s
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._failed: Counter[tuple[str, int, str]] = Counter()
        self._counts: Counter[str] = Counter()
        self._log: deque[RequestRecord] = deque(maxlen=1000)
        self.errors: list[str] = []
        try:
            self._server = LoopbackServer(_Handler, self, host, port, _Server)
        except OSError as e:
            raise TeacherError(
                f"the teacher double cannot listen on {host}:{port} ({e}): "
                "pick another port (0: any free one)"
            ) from None

    @property
    def url(self) -> str:
        return self._server.url

    def stats(self) -> dict[str, int]:
        """Requests received per session name (`<unmatched>` for the others)."""
        with self._lock:
            return dict(self._counts)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def close(self) -> None:
        self._closing.set()  # wakes requests sleeping in latency or hang_s
        self._server.close()

    def __enter__(self) -> DoubleServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def answer(self, body: Any, authorization: str) -> tuple[int, dict]:
        """Status and JSON payload for a chat completion request."""
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _error(400, "the request needs `messages`: a list of message objects")
        match = find_session(self.script, messages)
        name = match.session.name if match else UNMATCHED
        with self._lock:
            self._counts[name] += 1  # on arrival: requests still sleeping are counted
        self._closing.wait(self.latency_s)
        status, payload = self._answer_match(match, body, messages)
        record = RequestRecord(name, match.turn if match else -1, status, authorization)
        with self._lock:
            self._log.append(record)
        return status, payload

    def _answer_match(
        self, match: Match | None, body: dict, messages: list[dict]
    ) -> tuple[int, dict]:
        if match is None:
            first = next((message_text(m) for m in messages if m.get("role") == "user"), "")
            return _error(400, f"no script session matches the request starting {first[:120]!r}")
        session = match.session
        if match.turn >= len(session.turns):
            return _error(
                400,
                f"script session {session.name!r} has {len(session.turns)} turns "
                f"but the conversation already has {match.turn} assistant replies",
            )
        turn = session.turns[match.turn]
        conversation = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        fail = turn.fail or session.fail
        if fail and self._should_fail((session.name, match.turn, conversation), fail.times):
            self._closing.wait(fail.hang_s)
            return _error(
                fail.status,
                f"injected failure ({session.name} turn {match.turn})",
                "server_error" if fail.status >= 500 else "invalid_request_error",
            )
        self._closing.wait(session.hang_s if turn.hang_s is None else turn.hang_s)
        message, finish_reason = render(match, conversation)
        return 200, _completion(body, message, finish_reason)

    def _should_fail(self, key: tuple[str, int, str], times: int) -> bool:
        with self._lock:
            self._failed[key] += 1
            return self._failed[key] <= times


def _completion(body: dict, message: dict, finish_reason: str) -> dict:
    prompt = estimate_tokens(body["messages"]) + (
        estimate_tokens(body["tools"]) if body.get("tools") else 0
    )
    shown = [
        message.get("content") or "",
        message.get("reasoning_content", ""),
        message.get("tool_calls", []),
    ]
    completion = estimate_tokens(shown)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "teacher")),
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


class _Server(ClosingServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of concurrent rollouts connect at once
    owner: DoubleServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):  # clients that time out just hang up
            self.owner.errors.append(repr(error))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no stderr
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = {
                "id": self.server.owner.script.model,
                "object": "model",
                "owned_by": "trajlake",
            }
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send(*_error(404, f"no such path {self.path}: use /v1/chat/completions"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(*_error(404, f"no such path {self.path}: use /v1/chat/completions"))
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as e:
            self._send(*_error(400, f"the request body is not JSON: {e}"))
            return
        self._send(*self.server.owner.answer(body, self.headers.get("Authorization", "")))

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except ConnectionError:  # the client gave up (timeout) before the answer
            self.close_connection = True


def serve(
    script_path: str | Path | Script,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_s: float = 0.0,
) -> DoubleServer:
    """Start the double in a background thread; port 0 picks a free port (see `.url`)."""
    script = script_path if isinstance(script_path, Script) else load_script(script_path)
    return DoubleServer(script, host, port, latency_s)


def main(argv: list[str] | None = None) -> int:
    """`python -m trajlake.teacher.double ARGS`: the same as `trajlake teacher-double ARGS`
    (the options are defined once, with the other commands, in trajlake.commands.pipeline)."""
    from trajlake.cli import main as cli_main

    return cli_main(["teacher-double", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())

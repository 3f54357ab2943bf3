"""Checks a command makes before it consumes anything: the sandbox starts, the teacher answers.

`trajlake demo`, `run` and `stage NAME` call `check(config, stage_names)` before they read the
bus, emit a commit or write the lake, so a machine without bubblewrap or a teacher that is not
up fails at once with the fix, instead of turning every record into a dead letter.

- What each built-in stage needs is `NEEDS`, from what its `process` uses. A stage of your own
  (`package.module:factory`) is not checked here.
- sandbox: `trajlake.sandbox.check_sandbox` (bubblewrap on PATH and able to start one sandbox;
  docker: `docker info` reaches an engine; local: only with sandbox.allow_unsafe_local).
- teacher: `GET {url}/models` on every endpoint of `teacher.endpoints()`, at once, with the API
  key the calls send. At least one must answer: the pool routes calls around endpoints that
  fail, so a pool with one server down (or still loading) works, and each silent endpoint is a
  note. A model list without `teacher.model` is a note too (some servers list aliases only).
  Records replayed with another teacher (`trajlake replay --teacher`) use that one, unchecked.
- student (DAgger): checked as the teacher is, when a DAgger stage has records waiting.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from trajlake.config import Config, SandboxConfig, TeacherConfig
from trajlake.errors import SandboxError, SandboxUnavailable, TeacherUnreachable
from trajlake.sandbox import check_sandbox

SANDBOX, TEACHER, STUDENT = "sandbox", "teacher", "student"

#: built-in stage -> what it needs working before it may consume.
NEEDS: dict[str, frozenset[str]] = {
    "function_sampler": frozenset(),  # git objects only
    "rollout1": frozenset({SANDBOX, TEACHER}),  # the agent, then the teacher's self-evaluation
    "pr_writer": frozenset({TEACHER}),  # the teacher writes the PR; no command runs
    "rollout2": frozenset({SANDBOX, TEACHER}),
    "verifier": frozenset(),  # patches only
    "tester": frozenset({SANDBOX}),  # the repository's tests, in its environment
    "filter": frozenset(),  # a local tokenizer
    "dagger": frozenset({SANDBOX, TEACHER, STUDENT}),
}
TIMEOUT_S = 10.0
NOTHING_CONSUMED = "Nothing was read from the bus."


@dataclass(frozen=True)
class Answer:
    """What one teacher endpoint said to GET /models: its models, or the problem."""

    url: str
    models: tuple[str, ...] | None  # None: no usable answer
    problem: str = ""


def check(config: Config, stages: Iterable[str], waiting: Iterable[str] = ()) -> list[str]:
    """Raise SandboxUnavailable or TeacherUnreachable, saying what to do, unless what `stages`
    need works; the notes returned are warnings worth showing (an endpoint of several down).

    The student is called only by a DAgger stage with records to process, so it is checked
    for the stages in `waiting` (those with records on their inputs): a `trajlake run`, or an
    idle `trajlake stage dagger`, without DAgger work needs no student.
    """
    stages, waiting = list(stages), set(waiting)
    needs = (SANDBOX, TEACHER, STUDENT)
    users = {need: [s for s in stages if need in NEEDS.get(s, ())] for need in needs}
    if users[SANDBOX]:
        check_sandbox_works(config.sandbox, users[SANDBOX])
    notes = check_teacher(config.teacher, users[TEACHER]) if users[TEACHER] else []
    students = [s for s in users[STUDENT] if s in waiting]
    if students:
        notes += check_teacher(config.student, students, role=STUDENT)
    return notes


def check_sandbox_works(config: SandboxConfig, users: list[str]) -> None:
    try:
        check_sandbox(config)
    except SandboxError as e:
        raise SandboxUnavailable(
            f"{_names(users)} run agent commands in a sandbox, which cannot start here: {e}. "
            + NOTHING_CONSUMED
        ) from None


def check_teacher(
    config: TeacherConfig, users: list[str], timeout_s: float = TIMEOUT_S, role: str = TEACHER
) -> list[str]:
    """TeacherUnreachable unless an endpoint answers; notes on the others and on the model.
    `role` names the config section in what is said (the student is checked the same way)."""
    urls = config.endpoints()
    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        answers = list(pool.map(lambda url: ask_models(url, config, timeout_s), urls))
    up = [a for a in answers if a.models is not None]
    problems = "; ".join(f"{a.url}: {a.problem}" for a in answers if a.models is None)
    if not up:
        raise TeacherUnreachable(
            f"{_names(users)} need the {role}, but no endpoint answers GET …/models ({problems})."
            f" Start the {role} at {config.base_url}, or set {role}.base_url (e.g. "
            f"`--set {role}.base_url=http://HOST:8000/v1`). {NOTHING_CONSUMED}"
        )
    notes = [f"{role} endpoint {problems}; calls go to the others"] if problems else []
    missing = [a for a in up if a.models and config.model not in a.models]
    notes += [
        f"the {role} at {a.url} lists {', '.join(a.models[:5])} but not "
        f"{role}.model={config.model!r}: if calls are refused, set {role}.model"
        for a in missing
    ]
    return notes


def ask_models(url: str, config: TeacherConfig, timeout_s: float = TIMEOUT_S) -> Answer:
    """GET {url}/models with the API key the teacher's calls send."""
    api_key = os.environ.get(config.api_key_env, "")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(url.rstrip("/") + "/models", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as e:
        return Answer(url, None, _http_problem(e.code, config.api_key_env))
    except urllib.error.URLError as e:
        return Answer(url, None, f"no answer ({e.reason})")
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, not HTTP at all
        return Answer(url, None, f"no answer ({type(e).__name__}: {e})")
    except ValueError as e:  # an unknown URL scheme, or a body that is not JSON
        return Answer(url, None, f"not an OpenAI-compatible API root ({e})")
    data = body.get("data") if isinstance(body, dict) else None
    models = tuple(str(m["id"]) for m in data or [] if isinstance(m, dict) and "id" in m)
    return Answer(url, models)


def _http_problem(status: int, key_env: str) -> str:
    if status in (401, 403):
        return f"HTTP {status}: the API key was refused (check the variable {key_env})"
    if status == 404:
        return "HTTP 404: is this the API root? (it usually ends in /v1)"
    return f"HTTP {status}"


def _names(stages: list[str]) -> str:
    return ", ".join(stages)

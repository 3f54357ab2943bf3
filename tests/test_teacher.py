"""The real Teacher client (openai SDK) against the real scripted double, over HTTP on loopback."""

from __future__ import annotations

import json
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from trajlake.config import TeacherConfig
from trajlake.consumers.scaffold import SUBMIT_MARKER
from trajlake.errors import BudgetExceeded, Outage, TeacherError, TeacherUnavailable
from trajlake.teacher import Budget, Teacher, UsageMeter, teacher_id
from trajlake.teacher import double as double_module
from trajlake.teacher.client import backoff_delay
from trajlake.teacher.double import DoubleServer, demo_script_path, serve
from trajlake.teacher.reply import parse_message
from trajlake.teacher.script import ScriptError, load_script

pytestmark = pytest.mark.teacher

LONG_ANSWER = "word " * 320  # 1,600 characters: about 400 tokens

SCRIPT: dict[str, Any] = {
    "sessions": [
        {"name": "hello", "match": "^hello", "turns": [{"content": "hi"}]},
        {
            "name": "reasoning_field",
            "match": "^reasoning field",
            "turns": [{"reasoning": "thinking hard", "content": "answer A"}],
        },
        {
            "name": "reasoning_inline",
            "match": "^reasoning inline",
            "reasoning_inline": True,
            "turns": [{"reasoning": "inline thoughts", "content": "answer B"}],
        },
        {
            "name": "tools",
            "match": "^use tools",
            "turns": [
                {
                    "reasoning": "two commands",
                    "tool_calls": [
                        {"name": "bash", "arguments": {"command": "echo hi"}},
                        {"name": "bash", "arguments": {"command": "ls -la"}},
                    ],
                }
            ],
        },
        {
            "name": "malformed",
            "match": "^malformed",
            "turns": [{"tool_calls": [{"name": "bash", "arguments": '{"command": "ls"'}]}],
        },
        {
            "name": "flaky",
            "match": "^flaky",
            "fail": {"status": 500, "times": 2},
            "turns": [{"content": "recovered"}],
        },
        {
            "name": "rate_limited",
            "match": "^rate limited",
            "turns": [{"content": "recovered", "fail": {"status": 429, "times": 1}}],
        },
        {"name": "hang", "match": "^hang", "hang_s": 5, "turns": [{"content": "too late"}]},
        {
            "name": "rejected",
            "match": "^rejected",
            "fail": {"status": 400, "times": 99},
            "turns": [{"content": "never"}],
        },
        {
            "name": "unauthorized",
            "match": "^unauthorized",
            "fail": {"status": 401, "times": 99},
            "turns": [{"content": "never"}],
        },
        {"name": "long", "match": "^long answer", "turns": [{"content": LONG_ANSWER}]},
        {
            "name": "edit",
            "match": r"edit function `(?P<function>\w+)` in (?P<path>\S+\.py)",
            "turns": [
                {
                    "tool_calls": [
                        {
                            "name": "bash",
                            "arguments": {"command": "sed -i 's/return 1/return 2/' {{path}}"},
                        }
                    ]
                },
                {"content": "edited {{function}}"},
            ],
        },
    ]
}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def script_file(tmp_path: Path) -> Path:
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(SCRIPT))
    return path


@pytest.fixture
def double(script_file: Path) -> Iterator[DoubleServer]:
    with serve(script_file) as server:
        yield server
    assert not server.errors


@pytest.fixture
def make_teacher(double: DoubleServer) -> Iterator[Callable[..., Teacher]]:
    made: list[Teacher] = []

    def make(budget: Budget | None = None, **fields: Any) -> Teacher:
        config = TeacherConfig(**{"base_url": double.url, "timeout_s": 5, **fields})
        made.append(Teacher(config, budget=budget, backoff_base_s=0.01))
        return made[-1]

    yield make
    for teacher in made:
        teacher.close()


def test_reasoning_in_a_separate_field_is_kept(make_teacher: Callable[..., Teacher]) -> None:
    reply = make_teacher().chat(user("reasoning field"))
    assert reply.message == {
        "role": "assistant",
        "content": "answer A",
        "reasoning_content": "thinking hard",
        "tool_calls": [],
    }
    assert reply.finish_reason == "stop" and not reply.format_error


def test_inline_think_is_split_off_the_content(make_teacher: Callable[..., Teacher]) -> None:
    reply = make_teacher().chat(user("reasoning inline"))
    assert reply.content == "answer B"
    assert reply.reasoning == "inline thoughts"


def test_tool_calls_are_parsed(make_teacher: Callable[..., Teacher]) -> None:
    reply = make_teacher().chat(user("use tools"))
    assert reply.finish_reason == "tool_calls" and not reply.format_error
    assert reply.reasoning == "two commands"
    assert [json.loads(c["function"]["arguments"]) for c in reply.tool_calls] == [
        {"command": "echo hi"},
        {"command": "ls -la"},
    ]
    assert all(
        c["type"] == "function" and c["function"]["name"] == "bash" for c in reply.tool_calls
    )
    assert len({c["id"] for c in reply.tool_calls}) == 2


def test_a_malformed_tool_call_is_flagged_not_raised(make_teacher: Callable[..., Teacher]) -> None:
    reply = make_teacher().chat(user("malformed"))
    assert reply.tool_calls[0]["function"] == {"name": "bash", "arguments": '{"command": "ls"'}
    assert "bash" in reply.format_error and "not valid JSON" in reply.format_error


def test_odd_reply_shapes_are_normalized() -> None:
    message, error = parse_message({"content": "plan</think>\n\nanswer", "reasoning": "field"})
    assert (message["reasoning_content"], message["content"], error) == (
        "field\n\nplan",
        "answer",
        "",
    )
    message, _ = parse_message({"content": "before <think>cut off by max_tok"})
    assert (message["reasoning_content"], message["content"]) == ("cut off by max_tok", "before")
    message, error = parse_message({"content": None, "tool_calls": [{"id": "a"}, "junk"]})
    assert message["content"] == "" and len(message["tool_calls"]) == 2
    assert "tool call 0 has no function name" in error and "tool call 1" in error
    bad_args = [{"function": {"name": "bash", "arguments": "[1, 2]"}}]
    _, error = parse_message({"content": "", "tool_calls": bad_args})
    assert "must be a JSON object" in error
    _, error = parse_message({"content": "", "tool_calls": "nope"})
    assert "must be a list" in error


@pytest.mark.parametrize(
    ("prompt", "session", "failures"), [("flaky", "flaky", 2), ("rate limited", "rate_limited", 1)]
)
def test_5xx_and_429_are_retried_until_an_answer(
    make_teacher: Callable[..., Teacher],
    double: DoubleServer,
    prompt: str,
    session: str,
    failures: int,
) -> None:
    teacher = make_teacher(max_retries=3)
    reply = teacher.chat(user(prompt))
    assert reply.content == "recovered"
    assert double.stats()[session] == failures + 1
    assert [r.status for r in double.requests()][-1] == 200
    total = teacher.usage.total()
    assert (total.calls, total.retries, total.failures) == (1, failures, 0)
    assert (total.prompt_tokens, total.completion_tokens) == (
        reply.prompt_tokens,
        reply.completion_tokens,
    )


def test_a_hang_past_the_timeout_is_retried_then_fails(
    make_teacher: Callable[..., Teacher], double: DoubleServer
) -> None:
    teacher = make_teacher(timeout_s=0.3, max_retries=1)
    with pytest.raises(TeacherUnavailable, match=r"timeout.*timeout_s=0\.3") as raised:
        teacher.chat(user("hang"))
    assert double.url in str(raised.value)
    assert double.stats()["hang"] == 2
    total = teacher.usage.total()
    assert (total.calls, total.retries, total.failures, total.total_tokens) == (0, 1, 1, 0)


def test_an_endpoint_that_is_down_fails_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    teacher = Teacher(TeacherConfig(base_url=url, max_retries=2), backoff_base_s=0.01)
    with teacher, pytest.raises(TeacherUnavailable, match="connection error") as raised:
        teacher.chat(user("hello"))
    message = str(raised.value)
    assert url in message and "3 time(s)" in message and "is running" in message
    assert teacher.usage.retries == 2 and teacher.budget.spent == 0


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(0)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]):
        delay = backoff_delay(attempt, base_s=0.5, cap_s=10.0, rng=rng)
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(
    ("prompt", "session"), [("rejected", "rejected"), ("nobody knows", "<unmatched>")]
)
def test_4xx_is_not_retried(
    make_teacher: Callable[..., Teacher], double: DoubleServer, prompt: str, session: str
) -> None:
    teacher = make_teacher(max_retries=3)
    with pytest.raises(TeacherError, match="HTTP 400") as raised:
        teacher.chat(user(prompt))
    assert not isinstance(raised.value, Outage)  # the request's own: the rollout's outcome
    assert double.stats() == {session: 1}
    assert teacher.usage.retries == 0 and teacher.usage.total().failures == 1
    if session == "<unmatched>":
        assert "'nobody knows'" in str(raised.value)


def test_a_conversation_past_the_last_turn_is_an_error(
    make_teacher: Callable[..., Teacher],
) -> None:
    messages = [*user("hello"), {"role": "assistant", "content": "hi"}, *user("again")]
    with pytest.raises(TeacherError, match="has 1 turns"):
        make_teacher(max_retries=0).chat(messages)


def test_budget_refuses_a_call_before_sending_it(
    make_teacher: Callable[..., Teacher], double: DoubleServer
) -> None:
    teacher = make_teacher(budget=Budget(100))
    with pytest.raises(BudgetExceeded, match="budget_tokens"):
        teacher.chat(user("hello"), max_tokens=200)
    assert double.stats() == {}  # nothing was sent

    budget = Budget(1000)
    teacher = make_teacher(budget=budget)
    first = teacher.chat(user("long answer"), max_tokens=600)
    spent = first.prompt_tokens + first.completion_tokens
    assert spent >= 400 and budget.spent == spent and budget.remaining() == 1000 - spent
    with pytest.raises(BudgetExceeded):  # spent + prompt + 600 would pass 1000
        teacher.chat(user("long answer"), max_tokens=600)
    assert double.stats() == {"long": 1}
    assert teacher.chat(user("hello"), max_tokens=10).content == "hi"  # a small call still fits


def test_budget_reservations_hold_under_concurrency() -> None:
    budget = Budget(1000)
    granted: list[int] = []

    def reserve() -> None:
        try:
            budget.reserve(300)
            granted.append(300)
        except BudgetExceeded:
            pass

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 3 and budget.remaining() == 100
    for amount in granted:
        budget.settle(amount, used=0)
    assert budget.remaining() == 1000 and Budget(0).remaining() is None


def test_usage_is_counted_per_purpose(make_teacher: Callable[..., Teacher]) -> None:
    teacher = make_teacher(usd_per_mtok_in=2.0, usd_per_mtok_out=8.0)
    replies = [
        teacher.chat(user("hello")),
        teacher.chat(user("use tools")),
        teacher.chat(user("hello"), purpose="self_eval"),
        teacher.chat(user("long answer"), purpose="pr_writer"),
    ]
    by_purpose = teacher.usage.by_purpose()
    assert {name: u.calls for name, u in by_purpose.items()} == {
        "agent": 2,
        "self_eval": 1,
        "pr_writer": 1,
    }
    assert by_purpose["pr_writer"].completion_tokens == replies[3].completion_tokens
    total = teacher.usage.total()
    assert total.prompt_tokens == sum(r.prompt_tokens for r in replies)
    assert total.completion_tokens == sum(r.completion_tokens for r in replies)
    expected = (total.prompt_tokens * 2.0 + total.completion_tokens * 8.0) / 1e6
    assert total.cost_usd == pytest.approx(expected) and total.cost_usd > 0


def test_teacher_id_is_stable_and_tracks_what_generates_the_data() -> None:
    base = TeacherConfig(model="Qwen/Qwen3-32B")
    tid = teacher_id(base, "bash-v1")
    assert tid.startswith("qwen3-32b-") and len(tid.rsplit("-", 1)[1]) == 12
    same = base.model_copy(update={"base_url": "http://elsewhere:9000/v1", "api_key_env": "K"})
    assert (
        teacher_id(same, "bash-v1")
        == tid
        == teacher_id(TeacherConfig(model="Qwen/Qwen3-32B"), "bash-v1")
    )
    changes = [
        {"model": "Qwen/Qwen3-8B"},
        {"endpoint_kind": "sglang"},
        {"temperature": 0.7},
        {"top_p": 0.95},
        {"max_tokens": 8192},
        {"prompt_version": "v2"},
    ]
    ids = {teacher_id(base.model_copy(update=change), "bash-v1") for change in changes}
    ids.add(teacher_id(base, "bash-v2"))
    assert tid not in ids and len(ids) == len(changes) + 1
    with Teacher(base, "bash-v1") as teacher:
        assert teacher.teacher_id == tid and tid in repr(teacher)
    with pytest.raises(TypeError, match="by keyword"):
        Teacher(base, UsageMeter())  # type: ignore[arg-type]


def test_the_api_key_reaches_the_server_but_is_never_kept(
    make_teacher: Callable[..., Teacher], double: DoubleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("TRAJLAKE_TEST_KEY", secret)
    teacher = make_teacher(api_key_env="TRAJLAKE_TEST_KEY")
    reply = teacher.chat(user("hello"))
    assert double.requests()[-1].authorization == f"Bearer {secret}"
    with pytest.raises(TeacherUnavailable) as raised:  # configuration, not the model: retried
        teacher.chat(user("unauthorized"))
    assert "TRAJLAKE_TEST_KEY" in str(raised.value)
    shown = [
        repr(teacher),
        str(teacher),
        repr(vars(teacher)),
        repr(reply),
        json.dumps(asdict(reply)),
        str(pickle.dumps(reply)),
        teacher.config.model_dump_json(),
        repr(teacher.usage),
        repr(teacher.budget),
        str(raised.value),
    ]
    assert not [text for text in shown if "SECRET" in text]


def test_64_concurrent_calls_overlap(script_file: Path) -> None:
    with serve(script_file, latency_s=0.2) as server:
        config = TeacherConfig(base_url=server.url, timeout_s=10, max_retries=0)
        with Teacher(config) as teacher, ThreadPoolExecutor(64) as pool:
            start = time.monotonic()
            replies = list(pool.map(lambda _: teacher.chat(user("hello")), range(64)))
            elapsed = time.monotonic() - start
    assert [r.content for r in replies] == ["hi"] * 64 and teacher.usage.calls == 64
    assert elapsed < 5, f"64 calls of 0.2 s took {elapsed:.1f} s: the double or client serializes"


def run_tool_calls(reply_message: dict[str, Any], cwd: Path) -> list[dict[str, Any]]:
    """Execute bash tool calls the way an agent would; returns the tool messages."""
    results = []
    for call in reply_message["tool_calls"]:
        command = json.loads(call["function"]["arguments"])["command"]
        done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True)
        output = done.stdout + done.stderr
        results.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    return results


def test_scripted_tool_calls_really_edit_files(
    make_teacher: Callable[..., Teacher], tmp_path: Path
) -> None:
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "mod.py"
    module.write_text("def f():\n    return 1\n")
    teacher = make_teacher()
    messages = user("Please edit function `f` in pkg/mod.py")
    reply = teacher.chat(messages)
    messages += [reply.message, *run_tool_calls(reply.message, tmp_path)]
    assert module.read_text() == "def f():\n    return 2\n"
    assert teacher.chat(messages).content == "edited f"


def play(teacher: Teacher, request: str, checkout: Path) -> list[dict[str, Any]]:
    messages = user(request)
    for _ in range(10):
        reply = teacher.chat(messages)
        messages += [reply.message, *run_tool_calls(reply.message, checkout)]
        if not reply.tool_calls or SUBMIT_MARKER in json.dumps(reply.tool_calls):
            return messages
    raise AssertionError("the demo agent did not finish in 10 turns")


def test_the_demo_script_plays_t1_self_eval_pr_and_t2(tmp_path: Path) -> None:
    source = 'def target(x):\n    """Double x."""\n    return 2 * x\n\n\ndef other(): return 0\n'
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text(source)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qam", "init", "--allow-empty"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "add"], cwd=repo, check=True)
    with serve(demo_script_path()) as server:
        with Teacher(TeacherConfig(base_url=server.url)) as teacher:
            request = (
                "Improve `target` in `pkg/mod.py`. "
                "`target` is the Python function at lines 1-3 of `pkg/mod.py`."
            )  # the location sentence every request ends with (consumers/taxonomy.py)
            messages = play(teacher, request, repo)
            verdict = teacher.chat(
                user("Is the change aligned with the request? Answer yes or no.")
            )
            pr = teacher.chat(
                user(f"Write a pull request description for:\n{messages[0]['content']}")
            )
            git_diff = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True)
            subprocess.run(["git", "checkout", "-q", "."], cwd=repo, check=True)
            play(teacher, pr.content, repo)  # rollout 2 from the PR text alone
        assert server.stats() == {"agent_t1": 4, "agent_t2_full": 3, "self_eval": 1, "pr_writer": 1}
    assert "+    # Note: target was reviewed" in git_diff.stdout
    assert any("diff --git" in m["content"] for m in messages if m["role"] == "tool")
    assert verdict.content.startswith("yes") and verdict.reasoning
    assert "`target`" in pr.content and "pkg/mod.py" in pr.content
    t2_diff = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True).stdout
    assert t2_diff == git_diff.stdout


def test_script_errors_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"sessions": [{"name": "a", "match": "(", "turns": [{}]}]}))
    with pytest.raises(ScriptError, match="sessions.0.match.*regular expression"):
        load_script(bad)
    bad.write_text(
        yaml.safe_dump({"sessions": [{"name": "a", "match": "x", "turns": [{"cotent": "typo"}]}]})
    )
    with pytest.raises(ScriptError, match="cotent"):
        load_script(bad)
    with pytest.raises(ScriptError, match="not found"):
        serve(tmp_path / "missing.yaml")
    assert load_script(demo_script_path()).sessions
    example = double_module.__doc__.split("::\n\n", 1)[1].split("\n\nThe turn given")[0]
    bad.write_text(textwrap.dedent(example))
    assert [s.name for s in load_script(bad).sessions] == ["self_eval", "agent"]


def test_the_command_prints_its_url_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "trajlake.teacher.double", "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with Teacher(TeacherConfig(base_url=url)) as teacher:
            reply = teacher.chat(user("Answer yes or no."))
            assert reply.content.startswith("yes")  # the demo script
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_models_endpoint_answers_the_sdk(double: DoubleServer) -> None:
    client = openai.OpenAI(base_url=double.url, api_key="EMPTY", max_retries=0)
    assert [m.id for m in client.models.list()] == ["teacher"]

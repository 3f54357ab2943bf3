"""Rollout 1 and 2 with the real agent loop, a real bubblewrap sandbox and the HTTP double."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import git_repo

from trajlake.config import load_config
from trajlake.consumers.agent import TeacherModel, run_agent
from trajlake.consumers.pr_writer import wants_pr
from trajlake.consumers.rollout import Rollouts, rollout1
from trajlake.consumers.watchdog import THREAD_NAME
from trajlake.sandbox import open_sandbox
from trajlake.schemas import TaskEvent, make_event_id
from trajlake.teacher.double import serve

pytestmark = pytest.mark.integration

SUBMIT = {"name": "bash", "arguments": {"command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"}}


def agent_turns(edit: str) -> list[dict]:
    return [
        {"reasoning": "Edit.", "tool_calls": [{"name": "bash", "arguments": {"command": edit}}]},
        {"tool_calls": [SUBMIT]},
    ]


def script(tmp_path: Path, verdict: str = "yes", **agent: object) -> Path:
    path = tmp_path / "script.yaml"
    sessions = [
        {
            "name": "self_eval",
            "match": "aligned with the request",
            "match_on": "last_user",
            "turns": [{"content": verdict}],
        },
        {
            "name": "agent",
            "match": "`(?P<function>\\w+)` in `(?P<path>[^`]+)`",
            "turns": agent_turns("echo '# touched' >> {{path}}"),
            **agent,
        },
    ]
    path.write_text(yaml.safe_dump({"sessions": sessions}))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    return git_repo(tmp_path / "repo", {"pkg/mod.py": "def f(x):\n    return x + 1\n"})


def task(repo: tuple[Path, str], name: str = "f") -> TaskEvent:
    path, commit = repo
    return TaskEvent(
        event_id=make_event_id("commit-event", "function_sampler", name),
        parent_ids=["commit-event"],
        stage="function_sampler",
        repo="repo",
        repo_url=str(path),
        commit=commit,
        function_file="pkg/mod.py",
        function_name=name,
        line_start=1,
        line_end=2,
        change_type="error_handling",
        request=f"Look at `{name}` in `pkg/mod.py`.",
    )


def rollouts(tmp_path: Path, url: str, *overrides: str) -> Rollouts:
    config = load_config(
        None,
        [
            f"lake.root={tmp_path / 'lake'}",
            f"agent.trajectories={tmp_path / 'traj'}",
            f"teacher.base_url={url}",
            "teacher.max_retries=0",
            *overrides,
        ],
    )
    return Rollouts.create(config)


def test_a_rollout_records_messages_patch_usage_and_every_step(tmp_path, repo):
    with serve(script(tmp_path)) as double:
        [t1] = rollout1(rollouts(tmp_path, double.url), task(repo))
    assert (t1.exit_status, t1.self_eval, t1.attempt, t1.sandbox) == (
        "Submitted",
        "yes",
        1,
        "bubblewrap",
    )
    assert "+# touched" in t1.patch and t1.patch_hash
    messages = json.loads(t1.messages_json)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["reasoning_content"] == "Edit." and messages[2]["tool_calls"]
    assert t1.prompt_tokens > 0 and t1.completion_tokens > 0 and t1.steps == 2
    saved = json.loads((tmp_path / "traj" / f"{t1.event_id}.json").read_text())
    assert len(saved["messages"]) >= 5  # the trajectory file, written step by step
    assert wants_pr(t1)


def test_a_no_from_self_evaluation_draws_new_requests_and_keeps_every_attempt(tmp_path, repo):
    with serve(script(tmp_path, verdict="no")) as double:
        outputs = rollout1(rollouts(tmp_path, double.url), task(repo))
    assert [o.attempt for o in outputs] == [1, 2, 3]
    assert {o.self_eval for o in outputs} == {"no"}
    assert len({o.request for o in outputs}) == 3 and len({o.event_id for o in outputs}) == 3
    assert not any(wants_pr(o) for o in outputs)


def test_the_same_patch_again_is_a_duplicate_and_goes_no_further(tmp_path, repo):
    with serve(script(tmp_path)) as double:
        ctx = rollouts(tmp_path, double.url)
        [first] = rollout1(ctx, task(repo, "f"))
        [again] = rollout1(ctx, task(repo, "g"))  # another task, the very same edit
    assert not first.duplicate and again.duplicate and again.patch_hash == first.patch_hash
    assert wants_pr(first) and not wants_pr(again)


def test_a_hung_teacher_is_abandoned_and_requeued_a_bounded_number_of_times(tmp_path, repo):
    with serve(script(tmp_path, hang_s=3)) as double:
        ctx = rollouts(tmp_path, double.url, "agent.no_progress_s=0.5", "agent.max_requeues=1")
        [t1] = rollout1(ctx, task(repo))
        assert double.stats()["agent"] == 2  # the first try and one re-queue
    assert t1.exit_status == "Abandoned" and "no progress" in t1.error


def test_an_abandoned_attempt_that_wakes_late_changes_nothing_of_the_kept_one(tmp_path, repo):
    """The first attempt's first call hangs past no_progress_s, so a second attempt runs and
    submits; when the hung call returns, the abandoned attempt stops, and neither its empty
    patch nor its short trajectory replaces the kept attempt's."""
    turns = agent_turns("echo '# touched' >> {{path}}")
    turns[0]["fail"] = {"status": 500, "times": 1, "hang_s": 2}  # the first call only
    with serve(script(tmp_path, turns=turns)) as double:
        ctx = rollouts(tmp_path, double.url, "agent.no_progress_s=0.5", "agent.max_requeues=1")
        [t1] = rollout1(ctx, task(repo))
        deadline = time.monotonic() + 60
        while any(t.name == THREAD_NAME for t in threading.enumerate()):  # the abandoned one
            assert time.monotonic() < deadline, "the abandoned attempt never stopped"
            time.sleep(0.1)
    assert t1.exit_status == "Submitted" and "+# touched" in t1.patch
    saved = json.loads((tmp_path / "traj" / f"{t1.event_id}.json").read_text())
    assert saved["info"]["exit_status"] == "Submitted"
    assert len(saved["messages"]) >= 5
    assert list((tmp_path / "traj").iterdir()) == [tmp_path / "traj" / f"{t1.event_id}.json"]


def test_steps_a_killed_process_left_behind_go_when_the_rollout_is_kept(tmp_path, repo):
    left = tmp_path / "traj" / "r1.attempt-1.part"  # a SIGKILLed stage's attempt, half saved
    left.parent.mkdir()
    left.write_text("{}")
    with serve(script(tmp_path)) as double:
        request = "Change the function `f` in `pkg/mod.py`."
        ran = rollouts(tmp_path, double.url).run(task(repo), "r1", request)
    assert ran.result.exit_status == "Submitted" and "+# touched" in ran.patch
    assert [p.name for p in left.parent.iterdir()] == ["r1.json"]


def test_malformed_tool_calls_are_answered_and_the_agent_goes_on(tmp_path, repo):
    turns = [
        {"tool_calls": [{"name": "bash", "arguments": '{"command": "ls"'}]},
        *agent_turns("echo '# fixed' >> {{path}}"),
    ]
    with serve(script(tmp_path, turns=turns)) as double:
        [t1] = rollout1(rollouts(tmp_path, double.url), task(repo))
    assert t1.exit_status == "Submitted" and "+# fixed" in t1.patch
    messages = json.loads(t1.messages_json)
    assert any("malformed" in m["content"] for m in messages if m["role"] == "user")
    [rejected] = [m for m in messages if m.get("rejected")]  # marked: mixtures do not train it
    assert rejected["role"] == "assistant" and "tool_calls" not in rejected


def test_a_token_budget_stops_work_before_it_is_exceeded(tmp_path, repo):
    with serve(script(tmp_path)) as double:
        # one call may use the prompt plus up to max_tokens: 2,000 tokens cannot cover that
        ctx = rollouts(
            tmp_path, double.url, "teacher.budget_tokens=2000", "teacher.max_tokens=4096"
        )
        outputs = rollout1(ctx, task(repo, "f")) + rollout1(ctx, task(repo, "g"))
        assert double.stats() == {}  # refused before anything was sent
    assert [o.exit_status for o in outputs] == ["BudgetExceeded", "BudgetExceeded"]
    assert ctx.teacher.budget.spent == 0 and not any(wants_pr(o) for o in outputs)


def test_a_missing_demonstrations_file_is_a_config_error_that_says_what_to_give(tmp_path):
    from trajlake.consumers.pr_writer import read_demos
    from trajlake.errors import ConfigError

    with pytest.raises(ConfigError, match="pr_writer.demos: cannot read .*JSONL"):
        read_demos(tmp_path / "missing.jsonl")


def test_calls_written_in_the_content_are_run_and_their_form_recorded(tmp_path, repo):
    import duckdb

    from trajlake.consumers.scaffold_check import check_sample
    from trajlake.lake.mixture_sql import MESSAGE_TYPE

    edit = {"name": "bash", "arguments": {"command": "echo '# from content' >> {{path}}"}}
    turns = [  # what a server without a tool-call parser returns: no tool_calls at all
        {"content": f"I will edit.\n<tool_call>\n{json.dumps(edit)}\n</tool_call>"},
        {"content": json.dumps({"name": "python", "arguments": {}})},
        {"content": f"Done.\n```json\n{json.dumps(SUBMIT)}\n```"},
    ]
    with serve(script(tmp_path, turns=turns)) as double:
        ctx = rollouts(tmp_path, double.url)
        [t1] = rollout1(ctx, task(repo))
    assert t1.exit_status == "Submitted" and "+# from content" in t1.patch
    messages = json.loads(t1.messages_json)
    assistant = [m for m in messages if m["role"] == "assistant"]
    assert [m.get("tool_call_source") for m in assistant] == ["hermes", "bare", "fenced"]
    assert [m["content"] for m in assistant] == ["I will edit.", turns[1]["content"], "Done."]
    assert "Unknown tool 'python'" in messages[5]["content"] and messages[5]["role"] == "user"
    # the mixture export reads only the OpenAI fields, and the sample passes `mixture check`
    [exported] = duckdb.execute(
        f"SELECT to_json(from_json(?, '{MESSAGE_TYPE}'))", [t1.messages_json]
    ).fetchone()
    exported = json.loads(exported)
    assert "tool_call_source" not in json.dumps(exported)
    assert exported[2]["tool_calls"] == assistant[0]["tool_calls"]
    assert check_sample(exported, t1.tools_json, t1.request, ctx.scaffold) is None


def test_the_kept_attempts_model_comes_back_with_its_result(tmp_path, repo):
    """The first attempt's sandbox starts late (past no_progress_s): it is abandoned, the second
    attempt builds its model and submits, and only then does the first build its own. The
    result carries the kept attempt's model, not the last one built (DAgger reads its turns)."""
    built: list[TeacherModel] = []
    opened: list[float] = []

    def make_model(*args):
        built.append(TeacherModel(*args))
        return built[-1]

    def open_box():
        opened.append(time.monotonic())
        if len(opened) == 1:
            time.sleep(2)  # no progress meanwhile: the watchdog starts the second attempt
        return open_sandbox(ctx.config.sandbox, repo[0], repo[1])

    with serve(script(tmp_path)) as double:
        ctx = rollouts(tmp_path, double.url, "agent.no_progress_s=0.5", "agent.max_requeues=1")
        request = "Change the function `f` in `pkg/mod.py`."
        result = run_agent(ctx.teacher, open_box, request, ctx.config.agent, ctx.scaffold,
                           make_model=make_model)  # fmt: skip
        deadline = time.monotonic() + 60
        while len(built) < 2 or any(t.name == THREAD_NAME for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the abandoned attempt never built its model"
            time.sleep(0.1)
    assert result.exit_status == "Submitted" and result.restarts == 1
    assert result.model is built[0] and built[-1] is not result.model  # the late one came last
    assert result.model.prompt_tokens == result.prompt_tokens > 0

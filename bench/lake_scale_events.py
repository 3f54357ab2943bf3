"""Synthetic SVG events for bench/lake_scale.py: tasks, T1/T2 rollouts, PRs, verdicts, samples.

Messages are real-looking JSON trajectories (reasoning, bash calls, tool output) cut from a
corpus of installed Python sources and package docs, so they compress like real ones (~3.5x
with zstd); their sizes are log-normal with a median of 60 KB and 1% over 1 MB. Samples carry
the token counts, truncation ratios and patch sizes of their rollouts, as the filter would.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
import sysconfig
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trajlake.consumers.filter import patch_lines, truncation_ratios
from trajlake.consumers.taxonomy import TAXONOMY, render
from trajlake.schemas import PrEvent, RolloutEvent, SampleEvent, TaskEvent, VerdictEvent

#: Drawn sizes: log-normal, median 50 KB (plus JSON, system prompt and whole lines: ~60 KB),
#: sigma 1.27, so that 1% of trajectories are over 1 MB.
MEDIAN_BYTES, SIGMA = 50_000, 1.27
MAX_BYTES = 16_000_000
BUDGETS = [8192, 32768]  # context budgets the filter measured
ACCEPT = 0.85  # teacher self-evaluation says "yes"; up to 3 attempts per function
START = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
TEACHER, SCAFFOLD, CONFIG = "qwen3-32b-t0.6-v1", "mini-bash-3f2a9c1d", "cfg-5e1b7a20"
TOOLS_JSON = json.dumps(
    [
        {
            "type": "function",
            "function": {
                "name": "bash",
                "description": "Run a bash command in the repository checkout and see its output.",
                "parameters": {
                    "type": "object",
                    "properties": {"command": {"type": "string", "description": "the command"}},
                    "required": ["command"],
                },
            },
        }
    ]
)
SYSTEM = json.dumps("You are a software engineer working in a repository checkout. " * 6)[1:-1]


class Corpus:
    """JSON-escaped ASCII text cut at line starts, so any slice is valid inside a JSON string."""

    def __init__(self, paths: Iterator[Path], limit: int) -> None:
        chunks, size = [], 0
        for path in paths:
            text = path.read_bytes().decode("ascii", "ignore")
            chunks.append(json.dumps(text)[1:-1])
            size += len(chunks[-1])
            if size >= limit:
                break
        self.text = "".join(chunks)
        self.starts = array("q", [0])
        at = self.text.find("\\n")
        while at >= 0:
            self.starts.append(at + 2)
            at = self.text.find("\\n", at + 2)

    def cut(self, rng: random.Random, chars: int) -> str:
        i = rng.randrange(len(self.starts) - 1)
        j = min(bisect_left(self.starts, self.starts[i] + chars, lo=i + 1), len(self.starts) - 1)
        return self.text[self.starts[i] : self.starts[j]]


def corpora(limit: int = 48_000_000) -> tuple[Corpus, Corpus]:
    """Code from installed .py files and prose from package docs, in a fixed order."""
    lib = Path(sysconfig.get_paths()["purelib"])
    docs = sorted(p for p in lib.rglob("*") if p.suffix in (".md", ".rst") or p.name == "METADATA")
    return Corpus(iter(sorted(lib.rglob("*.py"))), limit), Corpus(iter(docs), limit // 6)


def eid(kind: str, i: int) -> str:
    return hashlib.md5(f"{kind}:{i}".encode()).hexdigest()


@dataclass
class Plan:
    """Who is who: tasks (repo, commit, function, attempt, accepted), PRs for the accepted."""

    repos: list[str]
    commits: list[int] = field(default_factory=list)  # repo index per commit
    tasks: list[tuple[int, int, int, int, bool]] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)  # task index per PR / T2 / verdict
    #: rollout id -> (tokens per message, patch lines), from the rollout to its sample
    measured: dict[str, tuple[array, int]] = field(default_factory=dict)

    @classmethod
    def make(cls, rollouts: int, repos: int, seed: int = 0) -> Plan:
        rng = random.Random(seed)
        plan = cls([f"github.com/org{r % 17}/project-{r}" for r in range(repos)])
        weights = [1 / (r + 1) ** 0.7 for r in range(repos)]
        while len(plan.tasks) + len(plan.accepted) < rollouts:
            repo = rng.choices(range(repos), weights)[0]
            plan.commits.append(repo)
            for function in range(4):
                for attempt in (1, 2, 3):
                    ok = rng.random() < ACCEPT
                    plan.tasks.append((repo, len(plan.commits) - 1, function, attempt, ok))
                    if ok:
                        plan.accepted.append(len(plan.tasks) - 1)
                        break
        return plan


class Maker:
    """Builds the events of the plan; everything is seeded by the event's index."""

    def __init__(self, plan: Plan, code: Corpus, prose: Corpus) -> None:
        self.plan, self.code, self.prose = plan, code, prose

    def lineage(self, task: int, at: dt.datetime, stage: str) -> dict:
        repo, commit = self.plan.tasks[task][:2]
        name = self.plan.repos[repo]
        return {
            "created_at": at,
            "stage": stage,
            "repo": name,
            "repo_url": f"https://{name}.git",
            "commit": hashlib.sha1(f"commit:{commit}".encode()).hexdigest(),
            "teacher_id": TEACHER if stage != "function_sampler" else "",
            "config_hash": CONFIG,
            "scaffold_id": SCAFFOLD if stage != "function_sampler" else "",
        }

    def task(self, i: int, at: dt.datetime) -> TaskEvent:
        repo, commit, function, attempt, _ = self.plan.tasks[i]
        kind = TAXONOMY[(i * 7 + attempt) % len(TAXONOMY)]
        name, file = f"Handler{function}.process_{commit % 97}", f"src/pkg/mod{commit % 53}.py"
        return TaskEvent(
            event_id=eid("task", i),
            parent_ids=[eid("commit", commit)],
            **self.lineage(i, at, "function_sampler"),
            function_file=file,
            function_name=name,
            line_start=10 + function,
            line_end=60 + function,
            change_type=kind.key,
            request=render(kind, name, file),
            attempt=attempt,
            seed=i,
        )

    def patch(self, rng: random.Random, task: int) -> str:
        """A diff of a few to a few hundred changed lines (median ~25)."""
        lines = int(min(400, 3 + rng.lognormvariate(3.0, 0.9)))
        body = self.code.cut(rng, lines * 40).replace("\\n", "\n").splitlines()[:lines]
        removed = len(body[::3])
        path = f"src/m{task}.py"
        head = f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
        head += f"@@ -1,{removed} +1,{len(body) - removed} @@\n"
        return head + "".join(("+" if k % 3 else "-") + line + "\n" for k, line in enumerate(body))

    def messages(self, rng: random.Random, request: str) -> tuple[str, list[int], int]:
        """(messages_json, tokens per message, most tool tokens) of about the drawn size."""
        size = min(MAX_BYTES, int(MEDIAN_BYTES * math.exp(rng.gauss(0, SIGMA))))
        verbosity = rng.lognormvariate(0, 0.8)  # some agents read whole files, some grep
        steps = max(2, min(115, int(size / 2600 / verbosity)))
        parts = [f'[{{"role": "system", "content": "{SYSTEM}"}}', ""]
        parts[1] = f', {{"role": "user", "content": {json.dumps(request)}}}'
        tokens = [len(SYSTEM) // 4, len(request) // 4]
        for k in range(steps):
            think = self.prose.cut(rng, int(size / steps * 0.25))
            out = self.code.cut(rng, int(size / steps * 0.75))
            call = json.dumps(json.dumps({"command": f"sed -n {k},{k + 80}p src/m{k}.py"}))
            parts.append(
                f', {{"role": "assistant", "content": "", "reasoning_content": "{think}", '
                f'"tool_calls": [{{"id": "call_{k}", "type": "function", "function": '
                f'{{"name": "bash", "arguments": {call}}}}}]}}'
                f', {{"role": "tool", "tool_call_id": "call_{k}", "content": "{out}"}}'
            )
            tokens += [len(think) // 4 + 20, len(out) // 4 + 4]
        parts.append(', {"role": "assistant", "content": "Submitted the change."}]')
        return "".join(parts), tokens + [8], max(tokens[3::2], default=0)

    def rollout(self, i: int, at: dt.datetime, t2: bool) -> RolloutEvent:
        task = self.plan.accepted[i] if t2 else i
        rng = random.Random(f"{'t2' if t2 else 't1'}:{i}")
        source = self.task(task, at)
        request = self.pr_text(i) if t2 else source.request
        messages, tokens, _ = self.messages(rng, request)
        rid = eid("t2" if t2 else "t1", i)
        patch = self.patch(rng, task)
        self.plan.measured[rid] = (array("i", tokens), patch_lines(patch))
        return RolloutEvent(
            event_id=rid,
            parent_ids=[eid("pr", i) if t2 else source.event_id],
            **self.lineage(task, at, "rollout2" if t2 else "rollout1"),
            rollout="t2" if t2 else "t1",
            task_id=source.event_id,
            pr_id=eid("pr", i) if t2 else "",
            attempt=source.attempt,
            request=request,
            messages_json=messages,
            tools_json=TOOLS_JSON,
            patch=patch,
            patch_hash=hashlib.sha256(patch.encode()).hexdigest()[:32],
            reference_patch=self.patch(random.Random(f"t1:{task}"), task) if t2 else "",
            t1_id=eid("t1", task) if t2 else "",
            exit_status="Submitted" if rng.random() < 0.9 else "LimitsExceeded",
            steps=len(tokens) // 2,
            prompt_tokens=sum(tokens) * 3,
            completion_tokens=sum(tokens) // 5,
            wall_s=rng.uniform(30, 900),
            sandbox="bubblewrap",
            self_eval="" if t2 else ("yes" if self.plan.tasks[task][4] else "no"),
        )

    def pr_text(self, i: int) -> str:
        rng = random.Random(f"pr:{i}")
        return self.prose.cut(rng, rng.randint(600, 3000)).replace("\\n", "\n")

    def pr(self, i: int, at: dt.datetime) -> PrEvent:
        task = self.plan.accepted[i]
        return PrEvent(
            event_id=eid("pr", i),
            parent_ids=[eid("t1", task)],
            **self.lineage(task, at, "pr_writer"),
            task_id=eid("task", task),
            t1_id=eid("t1", task),
            pr_text=self.pr_text(i),
            p1_patch=self.patch(random.Random(f"t1:{task}"), task),
        )

    def verdict(self, i: int, at: dt.datetime) -> VerdictEvent:
        task, rng = self.plan.accepted[i], random.Random(f"v:{i}")
        total = rng.randint(1, 120)
        matched = min(total, int(total * rng.betavariate(2, 1) + 0.5))
        label = "hard" if matched == total else ("soft" if matched else "unverified")
        return VerdictEvent(
            event_id=eid("verdict", i),
            parent_ids=[eid("t2", i)],
            **self.lineage(task, at, "verifier"),
            task_id=eid("task", task),
            t1_id=eid("t1", task),
            t2_id=eid("t2", i),
            matched=matched,
            total=total,
            recall=matched / total,
            label=label,
        )

    def sample(self, i: int, at: dt.datetime, t2: bool) -> SampleEvent:
        task = self.plan.accepted[i] if t2 else i
        rid = eid("t2" if t2 else "t1", i)
        counts, lines = self.plan.measured.pop(rid)
        tokens = list(counts)
        roles = (
            ["system", "user"] + ["assistant", "tool"] * ((len(tokens) - 3) // 2) + ["assistant"]
        )
        return SampleEvent(
            event_id=eid("sample", rid),
            parent_ids=[rid],
            **self.lineage(task, at, "filter"),
            rollout_id=rid,
            rollout="t2" if t2 else "t1",
            task_id=eid("task", task),
            tokenizer="qwen3",
            message_tokens=tokens,
            total_tokens=sum(tokens),
            budgets=BUDGETS,
            truncation_ratios=truncation_ratios(tokens, roles, BUDGETS),
            patch_lines=lines,
            tool_tokens_mean=sum(tokens[3::2]) / max(1, len(tokens[3::2])),
            tool_tokens_max=max(tokens[3::2], default=0),
            steps=len(tokens) // 2,
            exit_status="Submitted",
        )

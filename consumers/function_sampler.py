"""Stage `function_sampler` (commits → tasks): SVG step 1.

At each commit, read from git objects (never a work tree), enumerate the functions and methods
of every language in consumers/languages.yaml (Python with its `ast`, the others with
tree-sitter), pick some (sampler.mode) and pair each with a vague change request drawn from the
taxonomy. Draws are seeded by (sampler.seed, commit, function), so a rerun gives the same tasks;
mode N shares its N draws fairly between the languages (see `select`).

Files left out (see source_files and languages): tests, vendored and generated files (by name,
by a marker comment among the first 10 lines, or by the repository's .gitattributes), those
matching `sampler.skip`, languages outside `sampler.languages`, and files that do not parse
(counted per language in `unparsed_files`). With `sampler.skip_trivial`, stubs and one-line
getters are left out too.

Run as: trajlake stage trajlake.consumers.function_sampler:make_stage
"""

from __future__ import annotations

import hashlib
import logging
import random
import sys
from collections import Counter
from functools import partial
from pathlib import Path

from trajlake.config import Config, SamplerConfig
from trajlake.consumers import languages as langs
from trajlake.consumers.functions import Function, parse_files
from trajlake.consumers.source_files import source_files
from trajlake.consumers.taxonomy import TAXONOMY, ChangeType, render
from trajlake.errors import TrajlakeError
from trajlake.producers.git import changed_lines, read_blobs
from trajlake.repos import local_git_dir
from trajlake.schemas import CommitEvent, Event, TaskEvent, make_event_id, utc_now
from trajlake.stage import Stage

log = logging.getLogger(__name__)

NAME = "function_sampler"


class SamplerError(TrajlakeError):
    """A commit event the sampler cannot work on."""


def make_stage(config: Config) -> Stage:
    return Stage(
        name=NAME, inputs=("commits",), outputs=("tasks",), process=partial(process, config)
    )


def process(config: Config, event: Event) -> list[Event]:
    """The tasks for one commit event (mode changed: lines changed against the first parent)."""
    if not isinstance(event, CommitEvent):
        raise SamplerError(f"{NAME} takes CommitEvents, got a {type(event).__name__}")
    if not event.repo_url:
        raise SamplerError(f"commit {event.commit} has no repo_url: emit it with `trajlake watch`")
    git_dir = local_git_dir(event.repo_url, config.producer.mirrors, event.commit)
    sampler = config.sampler
    changed = None
    if sampler.mode == "changed":
        parent = event.parents[0] if event.parents else None
        changed = changed_lines(git_dir, event.commit, parent, _pathspecs(sampler))
    functions, unparsed = functions_at(git_dir, event.commit, sampler, changed)
    weights = sampler.language_weights  # keys of languages.yaml (the config resolved aliases)
    chosen = select(functions, sampler.mode, sampler.seed, event.commit, changed, weights)
    return [
        make_task(event, fn, 1, sampler.seed, unparsed.get(fn.language, 0), config.hash())
        for fn in chosen
    ]


def _pathspecs(sampler: SamplerConfig) -> tuple[str, ...]:
    cat = langs.catalog()
    wanted = sampler.languages or list(cat.languages)
    shared = [ext for ext, owners in cat.shared_extensions.items() if set(owners) & set(wanted)]
    exts = {e for k in wanted for e in cat.languages[k].extensions} | set(shared)
    return tuple(f"*{e}" for e in sorted(exts))


def functions_at(
    git_dir: str | Path,
    commit: str,
    sampler: SamplerConfig,
    only: dict[str, set[int]] | None = None,
) -> tuple[list[Function], dict[str, int]]:
    """Functions in the commit's source files (only the files in `only`, when given), and per
    language how many of those files did not parse."""
    cat = langs.catalog()
    files = source_files(git_dir, commit, sampler, cat)
    if only is not None:
        files = [f for f in files if f.path in only]
    contents = read_blobs(git_dir, sorted({f.sha for f in files}))
    todo = [
        (f.path, f.language, f.sha, contents[f.sha])
        for f in files
        if not langs.is_generated(f.path, contents[f.sha], cat.languages[f.language], cat)
    ]
    functions: list[Function] = []
    unparsed: Counter[str] = Counter()
    for (path, language, _, _), result in zip(
        todo, parse_files(todo, sampler.skip_trivial, sampler.workers), strict=True
    ):
        if isinstance(result, str):
            unparsed[language] += 1
            log.info("%s at %s does not parse, skipped: %s", path, commit[:12], result)
        else:
            functions += result
    return functions, dict(unparsed)


def is_skipped(path: str, patterns: list[str]) -> bool:
    """A pattern without `/` matches the file name, one with `/` the whole path."""
    return langs.matches(path, patterns)


def is_generated(path: str, source: bytes) -> bool:
    """A generated file of a known language (see languages.is_generated)."""
    language = langs.detect([path]).get(path)
    if language is None:
        return False
    return langs.is_generated(path, source, langs.catalog().languages[language])


def select(
    functions: list[Function],
    mode: str,
    seed: int,
    commit: str,
    changed: dict[str, set[int]] | None = None,
    weights: dict[str, float] | None = None,
) -> list[Function]:
    """all: every function; changed: those whose span holds a changed line; N: N sampled,
    shared between languages by `weights` (default: each language's function count), each
    language's share drawn from its own functions (one language: exactly the draw of old)."""
    if mode == "all":
        return functions
    if mode == "changed":
        changed = changed or {}
        return [
            f
            for f in functions
            if any(f.line_start <= line <= f.line_end for line in changed.get(f.file, ()))
        ]
    by_language: dict[str, list[Function]] = {}
    for f in functions:
        by_language.setdefault(f.language, []).append(f)
    if len(by_language) <= 1 and not weights:
        chosen = _rng(seed, commit).sample(functions, min(int(mode), len(functions)))
    else:
        quotas = shares(int(mode), {k: len(v) for k, v in by_language.items()}, weights or {})
        chosen = [
            f
            for key, n in quotas.items()
            for f in _rng(seed, commit, key).sample(by_language[key], n)
        ]
    return sorted(chosen, key=lambda f: (f.file, f.line_start))


def shares(n: int, counts: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """How many of `n` draws each language gets: in proportion to its weight (default: its
    function count), by largest remainder, never more than it has; what a language cannot use
    goes to the others in proportion again."""
    weight = {k: float(weights.get(k, 0.0) if weights else c) for k, c in counts.items()}
    quota = dict.fromkeys(counts, 0)
    left = min(n, sum(c for k, c in counts.items() if weight[k] > 0))
    while left > 0:
        room = {
            k: counts[k] - quota[k] for k, w in weight.items() if w > 0 and quota[k] < counts[k]
        }
        total = sum(weight[k] for k in room)
        exact = {k: left * weight[k] / total for k in room}
        grant = {k: min(int(x), room[k]) for k, x in exact.items()}
        rest = left - sum(grant.values())
        for k in sorted(room, key=lambda k: (int(exact[k]) - exact[k], -weight[k], k)):
            if rest and grant[k] < room[k]:
                grant[k] += 1
                rest -= 1
        for k, g in grant.items():
            quota[k] += g
            left -= g
    return {k: q for k, q in quota.items() if q}


def draw_change_type(seed: int, commit: str, file: str, id_name: str, attempt: int) -> ChangeType:
    """The change type of one attempt: attempts 1, 2, 3 … walk a seeded shuffle of the
    taxonomy, so each attempt of a function gets a different type, the same on every rerun."""
    order = list(TAXONOMY)
    _rng(seed, commit, file, id_name).shuffle(order)
    return order[(attempt - 1) % len(order)]


def make_task(
    event: CommitEvent, fn: Function, attempt: int, seed: int, unparsed: int, config_hash: str
) -> TaskEvent:
    change = draw_change_type(seed, event.commit, fn.file, fn.id_name, attempt)
    return TaskEvent(
        event_id=make_event_id(event.event_id, NAME, fn.file, fn.id_name, attempt, seed),
        parent_ids=[event.event_id],
        stage=NAME,
        **event.lineage() | {"config_hash": config_hash},
        function_file=fn.file,
        function_name=fn.qualname,
        line_start=fn.line_start,
        line_end=fn.line_end,
        change_type=change.key,
        request=request_text(change, fn.qualname, fn.file, fn.language, fn.line_start, fn.line_end),
        attempt=attempt,
        seed=seed,
        unparsed_files=unparsed,
        language=fn.language,
    )


def request_text(
    change: ChangeType, name: str, file: str, language: str, start: int, end: int
) -> str:
    """The request: the change type's template, then the language and lines of the function."""
    title = langs.catalog().languages[language].title
    return render(change, name, file, title, (start, end))


def redraw(task: TaskEvent, attempt: int) -> TaskEvent:
    """The same function with a new request for `attempt` (2, 3, … after a "no"); pure and
    deterministic, with its own event id. `redraw(task, 1)` gives back the original request."""
    if attempt < 1 or not task.parent_ids:
        raise SamplerError(
            f"cannot redraw task {task.event_id} for attempt {attempt}: "
            "attempts start at 1 and the task must name its commit event"
        )
    parent = task.parent_ids[0]
    id_name = task.function_name
    if (
        make_event_id(parent, NAME, task.function_file, id_name, task.attempt, task.seed)
        != task.event_id
    ):
        id_name = f"{task.function_name}@{task.line_start}"  # a redefined name, see Function
    change = draw_change_type(task.seed, task.commit, task.function_file, id_name, attempt)
    return task.model_copy(
        update={
            "event_id": make_event_id(
                parent, NAME, task.function_file, id_name, attempt, task.seed
            ),
            "created_at": utc_now(),
            "change_type": change.key,
            "request": request_text(
                change,
                task.function_name,
                task.function_file,
                task.language,
                task.line_start,
                task.line_end,
            ),
            "attempt": attempt,
        }
    )


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def main(argv: list[str] | None = None) -> int:
    """`python -m trajlake.consumers.function_sampler [--set k=v …]`: the stage via the CLI."""
    from trajlake.cli import main as cli

    args = sys.argv[1:] if argv is None else argv
    return cli([*args, "stage", "trajlake.consumers.function_sampler:make_stage"])


if __name__ == "__main__":
    sys.exit(main())

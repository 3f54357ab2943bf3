"""Every command line the documentation shows parses, and runs on a copy of `trajlake demo`.

The lines are found, not listed (doc_helpers.py says where), so a newly documented command is
covered without editing this file; the lines `trajlake demo` prints are added. PLACEHOLDERS
gives each placeholder (NAME, FILE, P, …) a demo value, `[--option X]` is taken as written;
every line is parsed by the real parser, then runs as COMMANDS says: in this process, or in its
own where a process boundary matters (a server, `run --follow`). FRAGMENTS and PARSE_ONLY say
why a few are not run. compose lines are parsed after compose's entrypoint (--config
/etc/trajlake/…, kafka:9092, vLLM: only in the deployment) and run on the demo's config. A
placeholder or a command these tables do not know fails the test, naming the table to extend.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from doc_helpers import (
    ROOT,
    Doc,
    documented,
    free_port,
    in_process,
    serves,
    shell_join,
    start,
    stop,
    tokens,
)
from helpers import git_repo

from trajlake.cli import build_parser, hoist_overrides
from trajlake.demo import DEMO_MIXTURE, demo_config
from trajlake.environments.spec import SPEC_DIR
from trajlake.lake import Lake
from trajlake.teacher.double import demo_script_path

#: Documented text -> demo value, replaced in this order where it stands alone ({name}: Env).
PLACEHOLDERS: dict[str, str] = {
    "~/src/myproject": "{repos}/myproject",
    "/repos/project": "{repos}/project",
    "PATH_OR_URL": "file://{repos}/urlproject",  # a URL: registered as a mirror
    "http://vllm:8000/v1": "{teacher_url}",
    "new-teacher.yaml": "{scratch}/new-teacher.yaml",
    "T.yaml": "{scratch}/new-teacher.yaml",
    "SPEC.yaml": "{scratch}/described.yaml",  # the demo's spec, named `described`
    "training/configs/tiny-cpu.yaml": "{root}/training/configs/tiny-cpu.yaml",
    "training.yaml": "{root}/training/configs/tiny-cpu.yaml",
    "training/configs/qwen3-8b-32k.yaml": "{root}/training/configs/qwen3-8b-32k.yaml",
    "training/configs/qwen3-32b-32k.yaml": "{root}/training/configs/qwen3-32b-32k.yaml",
    "stage NAME": "stage function_sampler",
    "mixture show NAME": "mixture show myproj-v1",  # what `mixture example > spec.yaml` built
    "mixture check NAME": "mixture check myproj-v1",
    "--as-of NAME --force": "--as-of myproj-v1 --force",
    "mixtures/NAME": "mixtures/myproj-v1",
    "--workdir DIR": "--workdir {workdir}",
    "--partitions N": "--partitions 4",
    "$TRAJLAKE_PARTITIONS": "12",  # as in compose/.env.example
    "--script FILE": "--script {script}",
    "--port P": "--port {port}",
    "127.0.0.1:P/": "127.0.0.1:{port}/",
    "--stage S": "--stage rollout1",
    "--where SQL": "--where \"stage = 'rollout1'\"",
    "REPO": "myproject",
    "fixed.yaml": "{scratch}/fixed.yaml",  # the built-in python spec, as a user's file
    "http://127.0.0.1:PORT/v1": "{teacher_url}",  # llama-server's, as realmodel serve prints it
}
#: Documented spans that name a command (or part of one) without being a whole invocation.
FRAGMENTS: dict[str, str] = {
    "trajlake train": "README prose names the command; its invocations are in the block above",
    "trajlake sql": "README's module table names the command",
    "trajlake replay": "README's module table names the command",
    "trajlake dagger collect": "README's module table names the command",
    "trajlake --config /etc/trajlake/trajlake.yaml --set KEY=${VAR} …": (
        "the shape of compose's entrypoint; compose.yaml's services give it whole"
    ),
}
#: Whole commands that cannot run here, parsed only.
REAL_DEMO = (
    "trajlake --set teacher.base_url=http://127.0.0.1:PORT/v1 --set "
    "teacher.model=qwen2.5-coder-1.5b-instruct-q4_k_m --set teacher.max_tokens=256 --set "
    "teacher.timeout_s=900 --set agent.step_limit=4 --set agent.no_progress_s=900 --set "
    "runner.concurrency=1 --set sampler.mode=1 demo --workdir real-demo"
)
REAL_DEMO_TEXT = (
    "trajlake --set teacher.base_url=http://127.0.0.1:PORT/v1 --set "
    "teacher.model=qwen2.5-coder-0.5b-instruct-q4_k_m --set teacher.max_tokens=256 --set "
    "teacher.timeout_s=900 --set agent.step_limit=4 --set agent.no_progress_s=900 --set "
    "runner.concurrency=1 --set sampler.mode=1 --set agent.scaffold=mini-textbased demo "
    "--workdir real-demo"
)
DAGGER_COLLECT = (
    "trajlake --set student.base_url=http://127.0.0.1:8001/v1 --set student.checkpoint=runs/sft "
    "dagger collect --from tasks --iteration 1 --limit 512"
)
PARSE_ONLY: dict[str, str] = {
    "trajlake --set bus.kind=kafka --set bus.bootstrap_servers=localhost:9094 status": (
        "needs the compose deployment's Kafka broker on localhost:9094 (no Docker engine here)"
    ),
    REAL_DEMO: "needs llama-server with the 1.5B model, ~35 min; run for real in the closing note",
    REAL_DEMO_TEXT: "needs the served 0.5B, ~9 min; run for real in the closing note",
    "trajlake dagger serve --model runs/sft/model --port 8001": (
        "needs a trained student; tests/test_dagger_loop.py serves one it trained"
    ),
    "trajlake dagger serve --model runs/sft/model": (
        "needs a trained student; tests/test_dagger_loop.py serves one it trained"
    ),
    DAGGER_COLLECT: "needs a served student; tests/test_dagger_loop.py collects from one",
    "trajlake --set student.base_url=http://127.0.0.1:8001/v1 dagger collect --from tasks "
    "--iteration 1": "needs a served student; tests/test_dagger_loop.py collects from one",
    "trajlake mixture build dagger.yaml": (
        "a spec with a kind: dagger source over collected rows; tests/test_dagger_loop.py builds"
    ),
}
HERE = "tests/test_documented_commands.py"  # where the tables are
#: The documented way to start the teacher double; the module's teacher is started from it.
TEACHER_LINE = "trajlake teacher-double --script FILE --port P"


@dataclass(frozen=True)
class How:
    """How a documented command runs here."""

    finish: tuple[str, ...] = ()  # appended unless present: makes a long-running command end
    process: str = ""  # server: answers GET /models, stops on SIGTERM; follow: stops on SIGTERM
    in_parent: bool = False  # run beside the demo (`trajlake demo` then means ./trajlake-demo)


#: Commands that run as documented, in this process.
AS_THEY_ARE = (
    "run", "status", "teachers", "sql", "replay", "repo add", "repo list", "topics create",
    "topics list", "lake compact", "lake views", "config show", "mixture build",
    "mixture show", "mixture check", "mixture example", "dlq list", "dlq retry", "dlq heal",
    "scaffold show", "scaffold example", "report", "dagger status", "repo set", "env build",
    "env show", "env test", "env list", "env prune", "tests backfill", "tests agreement",
)  # fmt: skip
COMMANDS: dict[str, How] = {
    **{command: How() for command in AS_THEY_ARE},
    "demo": How(in_parent=True),  # again, on the copy: only what is new
    "run --follow": How(process="follow"),
    "watch": How(finish=("--once",)),
    "stage": How(finish=("--idle-timeout", "1")),
    "train": How(finish=("--dry-run",)),  # real runs: tests/test_training.py; no 8 GPUs here
    "teacher-double": How(process="server", finish=("--port", "0")),
    "env shell": How(finish=("--", "true")),  # not an interactive shell here
}


#: The repositories the docs register: a Python project with its tests (environments build it).
PROJECT = {
    "pyproject.toml": '[project]\nname = "calc"\nversion = "0.1"\n',
    "calc/__init__.py": "",
    "calc/ops.py": "def scale(xs, k):\n    return [x * k for x in xs]\n",
    "tests/test_ops.py": "from calc.ops import scale\n\n\ndef test_scale():\n"
    "    assert scale([1, 2], 3) == [3, 6]\n",
}


@dataclass
class Env:
    """The demo values placeholders take; `ran`: what already ran (argv, redirect, in_parent)."""

    workdir: Path
    repos: Path
    scratch: Path
    script: Path
    port: int
    teacher_url: str
    root: Path = ROOT
    ran: set[tuple] = field(default_factory=set)


def fill(text: str, env: Env) -> str:
    values = {key: str(value) for key, value in vars(env).items() if key != "ran"}
    for key, value in PLACEHOLDERS.items():  # a key that starts or ends a word stands alone
        before = r"(?<![\w$])" if re.match(r"[\w$]", key) else ""
        after = r"(?!\w)" if re.search(r"\w$", key) else ""
        filled = value.format(**values).replace("\\", "\\\\")  # taken as it is
        text = re.sub(before + re.escape(key) + after, filled, text)
    return text


def leftovers(argv: tuple[str, ...]) -> list[str]:
    """What still looks like a placeholder: NAME, FILE.yaml, $VAR, …, <x>."""
    pieces = [p for word in argv if " " not in word for p in re.split(r"[=/:,]", word)]
    pattern = r"[A-Z][A-Z0-9_]*(\.[a-z]+)?|.*[$…<].*"
    return [p for p in pieces if re.fullmatch(pattern, p)]


def parse_error(argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(hoist_overrides(argv))
    except SystemExit:
        return (err.getvalue().strip().splitlines() or ["(no message)"])[-1]
    return None


def how_to_run(argv: tuple[str, ...]) -> tuple[str, How | None]:
    parser, path = build_parser(), []
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            path.append(word)
            parser = subs[0].choices[word]
    name = " ".join(path)
    flagged = [f"{name} {w}" for w in argv if f"{name} {w}" in COMMANDS]
    return name, COMMANDS.get(flagged[0] if flagged else name)


class Unknown(Exception):
    """A documented line these tables cannot place, or one that does not parse."""


def prepare(doc: Doc, env: Env) -> tuple[tuple[str, ...], How | None, str]:
    """(argv with placeholders filled, how to run it or None, why it is not run)."""
    where = f"{doc.source}: `{doc.text}`"
    if doc.text in FRAGMENTS:
        return (), None, FRAGMENTS[doc.text]
    text = re.sub(r"\[(-[^\[\]]*)\]", r"\1", doc.text)  # [--stage S]: an optional part
    argv = tuple(tokens(fill(text, env))[1:])
    if unknown := leftovers(argv):
        raise Unknown(f"{where}: {unknown} are placeholders? add them to PLACEHOLDERS in {HERE}")
    for whole in dict.fromkeys([(*doc.entrypoint, *argv), argv]):
        if error := parse_error(list(whole)):
            raise Unknown(f"{where} does not parse ({shell_join(whole)}): {error}")
    if doc.text in PARSE_ONLY:
        return argv, None, PARSE_ONLY[doc.text]
    name, how = how_to_run(argv)
    if how is None:
        raise Unknown(
            f"{where}: `trajlake {name}` is documented, but COMMANDS in {HERE} does not say "
            "how to run it here: add it there (or the line to PARSE_ONLY, with the reason)"
        )
    finish = how.finish if how.finish and how.finish[0] not in argv else ()
    return (*argv, *finish), how, ""


def run(argv: tuple[str, ...], how: How, redirect: str | None, env: Env) -> str | None:
    """Run one documented command on the demo copy; what went wrong, or None."""
    cwd = env.workdir.parent if how.in_parent else env.workdir
    write_config(env)  # `trajlake demo` rewrote it with its own teacher
    if how.process:
        proc = start(argv, cwd)
        if how.process == "server":
            ok = serves(proc) is not None
        else:  # follow: once it says it follows, SIGTERM ends it cleanly
            ok = any("following new commits" in line for line in proc.stderr)
        rc, err = stop(proc)
        return None if ok and rc == 0 else f"exit {rc} (ready: {ok})\n{err[-3000:]}"
    rc, out, err = in_process(list(argv), cwd)
    if rc == 0 and redirect:
        (cwd / redirect).write_text(out)
    return None if rc == 0 else f"exit {rc}\n{err[-3000:]}"


def write_config(env: Env) -> None:
    config = demo_config(env.workdir, env.teacher_url, [])
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    (env.workdir / "trajlake.yaml").write_text(text)


def dummy_env(tmp_path: Path) -> Env:
    return Env(
        tmp_path / "w", tmp_path / "r", tmp_path / "s", tmp_path / "f.yaml", 1, "http://t/v1"
    )


@pytest.fixture(scope="module")
def env(demo_copy, tmp_path_factory: pytest.TempPathFactory):
    """The demo copied, three small repositories to register, the files placeholders name, and
    the teacher: the documented `trajlake teacher-double --script FILE --port P`, running."""
    parent, port = tmp_path_factory.mktemp("documented"), free_port()
    env = Env(parent / "trajlake-demo", parent / "repos", parent / "scratch",
              demo_script_path(), port, f"http://127.0.0.1:{port}/v1")  # fmt: skip
    doc = next((d for d in documented() if d.text == TEACHER_LINE), None)
    assert doc, f"the help no longer shows `{TEACHER_LINE}`"
    teacher = prepare(doc, env)[0]
    proc = start(teacher, parent)
    try:
        assert serves(proc) == env.teacher_url, proc.stderr.read()
        env.ran.add((teacher, None, False))
        demo_copy(parent, env.teacher_url)
        for name in ("myproject", "project", "urlproject"):
            git_repo(env.repos / name, PROJECT)
        env.scratch.mkdir()
        shutil.copy(SPEC_DIR / "python.yaml", env.scratch / "fixed.yaml")
        teacher_v2 = {"base_url": env.teacher_url, "model": "teacher-v2", "endpoint_kind": "double"}
        (env.scratch / "new-teacher.yaml").write_text(yaml.safe_dump({"teacher": teacher_v2}))
        (env.scratch / "described.yaml").write_text(
            DEMO_MIXTURE.replace("name: demo", "name: described")
        )
        yield env
    finally:
        rc, err = stop(proc)
    assert rc == 0, f"the teacher double did not stop cleanly on SIGTERM: {err}"


@pytest.mark.unit
def test_every_documented_line_parses(tmp_path: Path) -> None:
    docs, env, problems = documented(), dummy_env(tmp_path), []
    for doc in docs:
        try:
            prepare(doc, env)
        except Unknown as e:
            problems.append(str(e))
    assert not problems, "\n".join(problems)
    texts = {d.text for d in docs}
    for listed in (*FRAGMENTS, *PARSE_ONLY):
        assert listed in texts, f"{listed!r} is no longer documented: remove it from its table"
    sources = {d.source.split(":")[0].split(" ")[0] for d in docs}
    assert {"README.md", "compose/README.md", "compose/compose.yaml", "`trajlake"} <= sources
    assert TEACHER_LINE in texts
    assert "trajlake mixture build spec.yaml" in texts and "trajlake stage rollout1" in texts


@pytest.mark.integration
def test_every_documented_line_runs_on_the_demo(env: Env, demo_once) -> None:
    printed = [line.strip() for line in demo_once.output.splitlines()]
    by_demo = [
        Doc("`trajlake demo` output", line.replace(str(demo_once.workdir), str(env.workdir)))
        for line in printed if line.startswith("trajlake ")
    ]  # fmt: skip
    assert by_demo, "the demo no longer prints commands to try"
    failures = []
    for doc in documented() + by_demo:
        try:
            argv, how, _ = prepare(doc, env)
        except Unknown as e:
            failures.append(str(e))
            continue
        key = (argv, doc.redirect, how.in_parent if how else False)
        if how is None or key in env.ran:
            continue
        env.ran.add(key)
        if problem := run(argv, how, doc.redirect, env):
            failures.append(f"{doc.source}: `{doc.text}` ran as {shell_join(argv)}: {problem}")
    assert not failures, "\n\n".join(failures)
    assert Lake(str(env.workdir / "data" / "lake")).counts()["dlq"] == 0  # no record failed

"""Where the documentation shows `trajlake` command lines, found rather than listed.

- README.md and compose/README.md: shell lines in ```bash blocks (continued lines joined; each
  command of `a && b | c > f` on its own; `docker compose run [--rm] SERVICE ARGS` as the
  service's trajlake command) and inline `trajlake …` spans;
- compose/compose.yaml: each service whose entrypoint is trajlake, its command after the
  entrypoint's arguments (variables filled from .env.example);
- `trajlake --help` and every subcommand's: indented `trajlake …` lines of a description, epilog
  or help (cut where two spaces start the explanation) and `trajlake …` spans in them.

And how to run one: in this process (`in_process`), or as its own (`start`, `stop`).
Used by tests/test_documented_commands.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import traceback
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from test_compose import env_example, interpolate, services

from trajlake.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Doc:
    """One documented command: where it is, its text from `trajlake` on, a `> FILE`, and for
    compose the arguments its entrypoint puts first."""

    source: str
    text: str
    redirect: str | None = None
    entrypoint: tuple[str, ...] = ()


def tokens(text: str) -> list[str]:
    """Shell words, with && || ; | > as words of their own; # starts a comment."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def shell_join(words: list[str] | tuple[str, ...]) -> str:
    """Words as a shell line, quoted the way the docs quote them ("…" around SQL)."""
    return " ".join(w if re.fullmatch(r"[\w@%+=:,./~-]+", w) else json.dumps(w) for w in words)


def compose_services() -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """Services that run trajlake: name -> (entrypoint arguments, command), variables filled."""
    env, found = env_example(), {}
    for name, service in services().items():
        entry = service.get("entrypoint") or []
        if entry[:1] == ["trajlake"]:
            fill_in = [str(interpolate(a, env)) for a in [*entry[1:], *service.get("command", [])]]
            found[name] = (tuple(fill_in[: len(entry) - 1]), fill_in[len(entry) - 1 :])
    return found


def shell_docs(source: str, line: str, compose: dict) -> list[Doc]:
    """The trajlake commands of one shell line (`a && b | c > f`, `docker compose run S …`)."""
    docs, words = [], tokens(line)
    while words:
        cut = next((i for i, w in enumerate(words) if w in ("&&", "||", ";", "|")), len(words))
        segment, words = words[:cut], words[cut + 1 :]
        redirect = segment[segment.index(">") + 1] if ">" in segment else None
        segment = segment[: segment.index(">")] if redirect else segment
        if segment[:3] == ["docker", "compose", "run"]:
            rest = segment[3:]
            while rest and rest[0].startswith("-"):  # run's own options (--rm)
                rest = rest[1:]
            if rest and rest[0] in compose:
                entrypoint, command = compose[rest[0]]
                argv = ["trajlake", *(rest[1:] or command)]
                docs.append(Doc(source, shell_join(argv), redirect, entrypoint))
        elif segment[:1] == ["trajlake"]:
            docs.append(Doc(source, shell_join(segment), redirect))
    return docs


def span_docs(source: str, text: str) -> list[Doc]:
    """Inline `trajlake …` code spans (one may wrap over a line break)."""
    spans = (" ".join(m.group(1).split()) for m in re.finditer(r"`([^`]+)`", text))
    return [Doc(source, s) for s in spans if s == "trajlake" or s.startswith("trajlake ")]


def markdown_docs(name: str, compose: dict) -> list[Doc]:
    text = (ROOT / name).read_text()
    docs: list[Doc] = []
    fences = list(re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.M | re.S))
    for fence in (f for f in fences if f.group(1) in ("bash", "sh", "shell")):
        first = text.count("\n", 0, fence.start(2)) + 1
        pending = ""
        for number, line in enumerate(fence.group(2).splitlines(), first):
            if line.rstrip().endswith("\\"):  # continued on the next line
                pending += line.rstrip()[:-1] + " "
                continue
            docs += shell_docs(f"{name}:{number}", pending + line, compose)
            pending = ""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return docs + span_docs(name, prose)


def help_texts(
    parser: argparse.ArgumentParser, name: str = "trajlake"
) -> Iterator[tuple[str, str]]:
    """(where, text) for a parser's description and epilog, its options' and subcommands' help."""
    texts = [parser.description, parser.epilog, *(a.help for a in parser._actions)]
    yield from ((f"`{name} --help`", t) for t in texts if t and t != argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"`{name} --help`", choice.help or ""
            for sub_name, sub in action.choices.items():
                yield from help_texts(sub, f"{name} {sub_name}")


def help_docs() -> list[Doc]:
    docs: list[Doc] = []
    for where, text in help_texts(build_parser()):
        for line in text.splitlines():  # `  trajlake status    what it does`
            if re.match(r"\s+trajlake ", line):
                docs.append(Doc(where, re.split(r"\s{2,}", line.strip())[0]))
        docs += span_docs(where, text)
    return docs


def documented() -> list[Doc]:
    """Every documented command line, in reading order: README, compose, then the help."""
    compose = compose_services()
    docs = markdown_docs("README.md", compose) + markdown_docs("compose/README.md", compose)
    docs += [
        Doc(f"compose/compose.yaml service {name}", shell_join(["trajlake", *command]), None, entry)
        for name, (entry, command) in compose.items()
    ]
    return list(dict.fromkeys(docs + help_docs()))


def in_process(argv: list[str], cwd: Path) -> tuple[int | str, str, str]:
    """`trajlake ARGV` from `cwd`, in this process: (status, stdout, stderr)."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except SystemExit as e:
        rc = e.code
    except Exception:  # noqa: BLE001 - reported with the line that raised it
        rc, err = "an exception", io.StringIO(traceback.format_exc())
    finally:
        os.chdir(here)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return rc, out.getvalue(), err.getvalue()


def start(argv: tuple[str, ...], cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "trajlake.cli", *argv]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def serves(proc: subprocess.Popen) -> str | None:
    """The URL a teacher double printed, once GET /models answers there; None if it did not."""
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        return None
    with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
        return url if json.load(response)["data"] else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

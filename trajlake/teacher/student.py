"""The student as a policy: the same chat client as the teacher, with an id of its own.

A student is served like a teacher (vLLM, SGLang, or `trajlake dagger serve` on a laptop) and
spoken to with the same `Teacher` client: tool calls parsed the same way, retries, budget. What
differs is its id: a student is a checkpoint, so `student_id` hashes the served `trajlake
train` output (its config.json and mixture_manifest.json) when `student.checkpoint` names it,
and every DAgger row records which generation of the student visited the state.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from trajlake.config import StudentConfig
from trajlake.errors import ConfigError
from trajlake.teacher.accounting import UsageMeter
from trajlake.teacher.client import Teacher, teacher_id

#: The files of a `trajlake train` output that say which student it is.
CHECKPOINT_FILES = ("config.json", "mixture_manifest.json")


def student_id(config: StudentConfig, scaffold_id: str) -> str:
    """`<name>-<12 hex>`: from the checkpoint's files when `checkpoint` is set (the model
    directory of a `trajlake train` run, or the run directory holding `model/`), else from
    the model name and sampling, as a teacher id is."""
    if not config.checkpoint:
        return teacher_id(config, scaffold_id)
    model_dir = _model_dir(Path(config.checkpoint))
    digest = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        path = model_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    digest.update(teacher_id(config, scaffold_id).encode())  # sampling and scaffold, too
    run = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    slug = re.sub(r"[^a-z0-9]+", "-", run.lower()).strip("-")[:32] or "student"
    return f"{slug}-{digest.hexdigest()[:12]}"


def _model_dir(path: Path) -> Path:
    for candidate in (path / "model", path):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(
        f"student.checkpoint {path} has no config.json (nor model/config.json): point it at "
        "the output directory of `trajlake train`, or leave it empty"
    )


@functools.cache
def shared_student(config: StudentConfig, scaffold_id: str = "") -> Teacher:
    """One client per student config in this process (one usage meter, one token budget)."""
    return Teacher(config, scaffold_id, usage=UsageMeter())

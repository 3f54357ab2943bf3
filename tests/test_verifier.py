"""Soft verification: changed lines of real `git diff` output, recall of P1 in P2, the stage."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from trajlake.config import Config
from trajlake.consumers.verifier import Recall, make_stage, process, recall
from trajlake.errors import TrajlakeError
from trajlake.patches import PatchParseError, changed_lines, patch_size
from trajlake.schemas import RolloutEvent, VerdictEvent, make_event_id

pytestmark = pytest.mark.unit

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
FUNC = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"
LONG = "".join(f"line {i}\n" for i in range(40))


def git_diff(
    root: Path,
    before: dict[str, str | bytes],
    after: dict[str, str | bytes],
    chmod: dict[str, int] | None = None,
) -> str:
    """`git diff --binary` of a fresh repository whose files go from `before` to `after`."""
    root.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "diff.renames=true"]

    def write(files: dict[str, str | bytes]) -> None:
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    def run(*args: str) -> str:
        done = subprocess.run([*git, *args], cwd=root, env=GIT_ENV, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("init", "-q")
    write(before)
    run("add", "-A")
    run("commit", "-qm", "before", "--allow-empty")
    for name in set(before) - set(after):
        (root / name).unlink()
    write(after)
    for name, mode in (chmod or {}).items():
        (root / name).chmod(mode)
    run("add", "-A")
    return run("diff", "--cached", "--binary")


def sections(patch: str) -> list[str]:
    """A git diff's per-file sections, each starting with its `diff --git` line."""
    return ["diff --git" + part for part in patch.split("diff --git")[1:]]


# -- changed_lines ---------------------------------------------------------------------------


def test_changed_lines_of_new_deleted_renamed_and_binary_files(tmp_path):
    before = {
        "gone.txt": "bye\n",
        "old_name.txt": LONG,
        "img.bin": bytes(range(256)) * 4,
        "mode.sh": "echo hi\n",
    }
    after = {
        "new.txt": "hello\nworld",  # no newline at end of file
        "new_name.txt": LONG.replace("line 20\n", "line twenty\n"),
        "img.bin": bytes(reversed(range(256))) * 4,
        "mode.sh": "echo hi\n",
    }
    patch = git_diff(tmp_path / "r", before, after)
    assert "rename from old_name.txt" in patch and "GIT binary patch" in patch
    assert "\\ No newline at end of file" in patch

    assert changed_lines(patch) == ["-bye", "+hello", "+world", "-line 20", "+line twenty"]
    assert patch_size(patch) == 5


def test_a_diff_without_hunks_has_no_changed_lines(tmp_path):
    files = {"run.sh": "echo hi\n", "a.txt": LONG}
    patch = git_diff(
        tmp_path / "r", files, {"run.sh": "echo hi\n", "b.txt": LONG}, {"run.sh": 0o755}
    )
    assert "new mode 100755" in patch and "rename from a.txt" in patch and "@@" not in patch
    assert changed_lines(patch) == []


def test_lines_starting_with_dashes_or_pluses_are_changes_not_headers(tmp_path):
    before = {"q.sql": "SELECT 1;\n-- old\nSELECT 2;\n", "f.c": "int f(int i) {\nreturn i;\n}\n"}
    after = {"q.sql": "SELECT 1;\nSELECT 2;\n", "f.c": "int f(int i) {\n++i;\nreturn i;\n}\n"}
    patch = git_diff(tmp_path / "r", before, after)
    assert "\n--- old\n" in patch and "\n+++i;\n" in patch

    assert changed_lines(patch) == ["+++i;", "--- old"]
    assert recall(patch, patch) == Recall(2, 2, 1.0, "hard")


def test_header_like_lines_after_a_hunk_are_outside_it():
    # Two plain `diff -u` outputs back to back: the second file's `---`/`+++` lines follow the
    # first hunk directly; the counts say where that hunk ends. A mail signature closes it.
    patch = (
        "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
        "--- a/y\n+++ b/y\n@@ -1,2 +1,2 @@\n-c\n+d\n e\n-- \n2.39.5\n"
    )
    assert changed_lines(patch) == ["-a", "+b", "-c", "+d"]


def test_trailing_whitespace_is_cut_and_whitespace_only_lines_are_not_counted():
    patch = "diff --git a/x b/x\n@@ -1,2 +1,4 @@\n-keep \t\n+  indented  \n+   \n+\n \r\n"
    assert changed_lines(patch) == ["-keep", "+  indented"]


def test_text_that_is_not_a_diff_is_rejected():
    for text in ("this is not a patch\n", "+added?\n-removed?\n", "@@ nonsense @@\n-a\n"):
        with pytest.raises(PatchParseError):
            changed_lines(text)
    assert issubclass(PatchParseError, TrajlakeError)
    assert changed_lines("") == [] and changed_lines("\n  \n") == []


def test_a_hunk_that_does_not_match_its_counts_is_rejected(tmp_path):
    patch = git_diff(tmp_path / "r", {"a.txt": LONG}, {"a.txt": LONG.replace("line 3", "x")})
    truncated = patch.rsplit("\n", 3)[0] + "\n"  # the hunk's last lines are cut off
    with pytest.raises(PatchParseError, match="truncated"):
        changed_lines(truncated)
    too_many = "diff --git a/x b/x\n@@ -1 +1,2 @@\n-a\n-b\n+c\n+d\n"
    with pytest.raises(PatchParseError, match="more lines"):
        changed_lines(too_many)


def test_appended_lines_dash_lines_and_a_missing_final_newline(tmp_path):
    patches = [
        git_diff(
            tmp_path / "a",
            {"f.py": FUNC, "g.txt": LONG},
            {"f.py": FUNC + "x\n", "g.txt": LONG.replace("line 7", "seven")},
        ),
        git_diff(tmp_path / "b", {"q.sql": "-- a\n-- b\n"}, {"q.sql": "++a\n-- b\n"}),
        git_diff(tmp_path / "c", {"n": "1\n2"}, {"n": "1\n3"}),
    ]
    expected = [["+x", "-line 7", "+seven"], ["--- a", "+++a"], ["-2", "+3"]]
    for patch, lines in zip(patches, expected, strict=True):
        assert changed_lines(patch) == lines


# -- recall ----------------------------------------------------------------------------------


def test_identical_patches_are_hard_verified(tmp_path):
    patch = git_diff(tmp_path / "r", {"f.py": FUNC}, {"f.py": FUNC.replace("w * h", "h * w")})
    assert recall(patch, patch) == Recall(matched=2, total=2, recall=1.0, label="hard")


def test_partial_reproduction_is_soft_verified(tmp_path):
    new = FUNC.replace("w * h", "h * w").replace("2 * (w + h)", "2 * w + 2 * h")
    p1 = git_diff(tmp_path / "p1", {"f.py": FUNC}, {"f.py": new})
    p2 = git_diff(
        tmp_path / "p2", {"f.py": FUNC}, {"f.py": new.replace("2 * w + 2 * h", "w+w+h+h")}
    )
    assert recall(p1, p2) == Recall(matched=3, total=4, recall=0.75, label="soft")


def test_order_of_files_and_hunks_does_not_matter(tmp_path):
    before = {"a.txt": LONG, "b.txt": LONG}
    after = {"a.txt": LONG.replace("line 2\n", "two\n").replace("line 30\n", "thirty\n")}
    after["b.txt"] = LONG.replace("line 5\n", "five\n")
    p1 = git_diff(tmp_path / "r", before, after)
    file_a, file_b = sections(p1)
    head, hunk1, hunk2 = file_a.split("\n@@")
    p2 = file_b + head + "\n@@" + hunk2 + "\n@@" + hunk1
    assert p2 != p1 and sorted(changed_lines(p2)) == sorted(changed_lines(p1))
    assert recall(p1, p2) == Recall(6, 6, 1.0, "hard")


def test_line_end_whitespace_differences_still_match(tmp_path):
    p1 = git_diff(tmp_path / "p1", {"f.py": FUNC}, {"f.py": FUNC + "\n    \nx = 1\n"})
    p2 = git_diff(tmp_path / "p2", {"f.py": FUNC}, {"f.py": FUNC + "x = 1   \t\n"})
    assert changed_lines(p1) == ["+x = 1"]  # the blank and whitespace-only lines don't count
    assert recall(p1, p2) == Recall(1, 1, 1.0, "hard")


def test_multi_file_patch(tmp_path):
    before = {"a.py": FUNC, "pkg/b.py": LONG, "c.md": "# Title\n"}
    p1_after = {"a.py": FUNC + "y = 2\n", "pkg/b.py": LONG.replace("line 9", "nine"), "c.md": ""}
    p2_after = {"a.py": FUNC + "y = 2\n", "pkg/b.py": LONG.replace("line 9", "9"), "c.md": "# T\n"}
    p1 = git_diff(tmp_path / "p1", before, p1_after)
    p2 = git_diff(tmp_path / "p2", before, p2_after)
    assert len(sections(p1)) == 3
    # P1: +y = 2, -line 9, +nine, -# Title. P2 shares +y = 2, -line 9 and -# Title.
    assert recall(p1, p2) == Recall(3, 4, 0.75, "soft")


def test_lines_are_matched_as_a_multiset(tmp_path):
    p1 = git_diff(tmp_path / "p1", {"f.py": FUNC}, {"f.py": FUNC + "x = 1\nx = 1\n"})
    p2 = git_diff(tmp_path / "p2", {"f.py": FUNC}, {"f.py": FUNC + "x = 1\n"})
    assert recall(p1, p2) == Recall(1, 2, 0.5, "soft")
    assert recall(p2, p1) == Recall(1, 1, 1.0, "hard")
    p3 = git_diff(tmp_path / "p3", {"f.py": FUNC}, {"f.py": FUNC + "x = 1\n" * 3 + "y\ny\n"})
    p4 = git_diff(tmp_path / "p4", {"f.py": FUNC}, {"f.py": FUNC + "x = 1\n" * 2 + "y\ny\ny\n"})
    assert recall(p3, p4) == Recall(4, 5, 0.8, "soft")  # both sides repeat lines


def test_nothing_in_common_is_unverified(tmp_path):
    p1 = git_diff(tmp_path / "p1", {"f.py": FUNC}, {"f.py": FUNC + "a = 1\n"})
    p2 = git_diff(tmp_path / "p2", {"f.py": FUNC}, {"f.py": FUNC + "b = 2\n"})
    assert recall(p1, p2) == Recall(0, 1, 0.0, "unverified")
    assert recall(p1, "") == Recall(0, 1, 0.0, "unverified")  # T2 changed nothing


def test_p1_without_changed_lines_is_empty(tmp_path):
    binary_only = git_diff(tmp_path / "r", {"i.bin": b"\x00\x01" * 50}, {"i.bin": b"\x02" * 99})
    assert "GIT binary patch" in binary_only and changed_lines(binary_only) == []
    assert recall("", binary_only) == Recall(0, 0, None, "empty")
    assert recall(binary_only, binary_only) == Recall(0, 0, None, "empty")


def test_unparseable_patches_give_a_row_not_an_exception(tmp_path):
    p1 = git_diff(tmp_path / "r", {"f.py": FUNC}, {"f.py": FUNC + "a = 1\nb = 2\n"})
    assert recall("I could not make a patch", p1) == Recall(0, 0, None, "unparseable")
    assert recall(p1, "Error: sandbox crashed") == Recall(0, 2, None, "unparseable")


def test_binary_sections_contribute_nothing(tmp_path):
    before = {"i.bin": bytes(range(256)), "f.py": FUNC}
    text_only = git_diff(tmp_path / "a", before, {"i.bin": bytes(range(256)), "f.py": FUNC + "z\n"})
    with_binary = git_diff(tmp_path / "b", before, {"i.bin": b"\xff" * 300, "f.py": FUNC + "z\n"})
    assert changed_lines(with_binary) == changed_lines(text_only) == ["+z"]
    assert recall(with_binary, text_only).label == "hard"


# -- the stage -------------------------------------------------------------------------------


def rollout(rollout: str, patch: str, reference: str) -> RolloutEvent:
    return RolloutEvent(
        event_id=make_event_id("t2-of", rollout),
        parent_ids=["pr-1"],
        stage="rollout",
        repo="demo/repo",
        repo_url="/srv/demo.git",
        commit="c" * 40,
        teacher_id="teacher-1",
        config_hash="cfg",
        scaffold_id="mini-swe-agent/v1",
        rollout=rollout,
        task_id="task-1",
        pr_id="pr-1",
        request="Fix area()",
        patch=patch,
        reference_patch=reference,
        t1_id="t1-1",
        exit_status="Submitted",
    )


def test_process_turns_a_rollout_2_into_a_verdict(tmp_path):
    new = FUNC.replace("w * h", "h * w").replace("2 * (w + h)", "2 * w + 2 * h")
    p1 = git_diff(tmp_path / "p1", {"f.py": FUNC}, {"f.py": new})
    p2 = git_diff(tmp_path / "p2", {"f.py": FUNC}, {"f.py": FUNC.replace("w * h", "h * w")})
    event = rollout("t2", patch=p2, reference=p1)

    [verdict] = process(event)

    assert isinstance(verdict, VerdictEvent) and verdict.topic() == "verdicts"
    assert verdict.event_id == make_event_id(event.event_id, "verifier")
    assert verdict.parent_ids == [event.event_id] and verdict.stage == "verifier"
    assert (verdict.task_id, verdict.t1_id, verdict.t2_id) == ("task-1", "t1-1", event.event_id)
    assert (verdict.matched, verdict.total, verdict.recall, verdict.label) == (2, 4, 0.5, "soft")
    lineage = ("repo", "repo_url", "commit", "teacher_id", "config_hash", "scaffold_id")
    assert {f: getattr(verdict, f) for f in lineage} == {f: getattr(event, f) for f in lineage}
    assert process(event)[0].event_id == verdict.event_id  # re-processing: same id
    assert VerdictEvent.decode(verdict.encode()) == verdict


def test_process_records_an_unparseable_patch():
    [verdict] = process(rollout("t2", patch="not a diff", reference="not a diff either"))
    assert (verdict.label, verdict.recall, verdict.total) == ("unparseable", None, 0)


def test_process_rejects_a_rollout_1():
    with pytest.raises(ValueError, match="rollout-2"):
        process(rollout("t1", patch="", reference=""))


def test_make_stage():
    stage = make_stage(Config())
    assert (stage.name, stage.inputs, stage.outputs) == (
        "verifier",
        ("rollouts.t2",),
        ("verdicts",),
    )
    assert stage.process is process and not stage.skip_if_done

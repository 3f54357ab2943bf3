"""README's Languages commands on a polyglot repository: `trajlake --set sampler.mode=all …`
samples every language, and `trajlake sql` prints the tasks per language."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from doc_helpers import in_process
from helpers import git_repo
from test_languages_e2e import FILES

pytestmark = pytest.mark.languages


def test_per_language_counts_from_the_command_line(tmp_path: Path):
    repo, _ = git_repo(tmp_path / "shop", FILES)
    data = tmp_path / "data"
    config = {
        "bus": {"path": str(data / "bus.db")},
        "lake": {"root": str(data / "lake")},
        "producer": {"registry": str(data / "repos.db"), "mirrors": str(data / "mirrors")},
    }
    (tmp_path / "trajlake.yaml").write_text(yaml.safe_dump(config))

    def trajlake(*argv: str) -> str:
        rc, out, err = in_process(list(argv), tmp_path)
        assert rc == 0, err
        return out

    trajlake("repo", "add", str(repo), "--branch", "main", "--backfill", "1")
    trajlake("watch", "--once")
    trajlake("--set", "sampler.mode=all", "stage", "function_sampler", "--idle-timeout", "2")
    out = trajlake("sql", "SELECT language, count(*) FROM tasks GROUP BY 1 ORDER BY 1")

    rows = [
        line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["go"], ["python"], ["typescript"])
    ]
    assert [row[:1] + row[-1:] for row in rows] == [
        ["go", "2"],
        ["python", "1"],
        ["typescript", "2"],
    ], out

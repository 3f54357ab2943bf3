"""The whole SVG pipeline on a Go + TypeScript + Python repository: commits → tasks in all three
languages → T1 → PR → T2 → verdicts → samples, with the recalls known in advance.

Real git, bubblewrap sandboxes, lake and embedded bus; the teacher is the scripted double
(trajlake/teacher/scripts/demo.yaml) over HTTP. Its edit inserts two comment lines in the
file's own syntax at the first body line of the function the request locates; rollout 2
reproduces both lines for functions whose last name part starts with n-z (recall 1.0) and the
first for a-m (recall 0.5).
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import git_repo

from trajlake.bus import open_bus
from trajlake.demo import demo_config, ensure_tokenizer
from trajlake.lake import Lake
from trajlake.lake.mixture_spec import MixtureSpec
from trajlake.lake.mixtures import build
from trajlake.pipeline import run_pipeline
from trajlake.producers.commits import watch
from trajlake.repos import Registry
from trajlake.schemas import TOPICS
from trajlake.teacher.double import demo_script_path, serve

pytestmark = [pytest.mark.e2e, pytest.mark.languages]

FILES = {
    "go.mod": "module example.com/shop\n\ngo 1.22\n",
    "cart/cart.go": """package cart

type Cart struct{ items []int }

func (c *Cart) Add(price int) {
\tc.items = append(c.items, price)
}

func (c Cart) Total() int {
\tsum := 0
\tfor _, p := range c.items {
\t\tsum += p
\t}
\treturn sum
}
""",
    "cart/cart_test.go": "package cart\n\nfunc TestAdd(t *testing.T) {\n\tt.Log(1 + 1)\n}\n",
    "web/src/price.ts": """export function applyDiscount(price: number, pct: number): number {
  const cut = price * pct;
  return price - cut;
}

export class Formatter {
  render(amount: number): string {
    return `$${amount.toFixed(2)}`;
  }
}
""",
    "tools/report.py": """def summarize(rows):
    total = sum(rows)
    return {"n": len(rows), "total": total}
""",
}
EXPECTED = {  # (language, qualified name): (label, recall)
    ("go", "cart.(*Cart).Add"): ("soft", 0.5),
    ("go", "cart.Cart.Total"): ("hard", 1.0),
    ("typescript", "applyDiscount"): ("soft", 0.5),
    ("typescript", "Formatter.render"): ("hard", 1.0),
    ("python", "summarize"): ("hard", 1.0),
}
PIPELINE = """
SELECT t.language, t.function_name, v.label, v.recall, r1.patch,
       (SELECT count(*) FROM samples s WHERE s.rollout_id IN (r1.event_id, r2.event_id))
  FROM tasks t
  JOIN rollouts_t1 r1 ON r1.task_id = t.event_id
  JOIN prs p ON p.t1_id = r1.event_id
  JOIN rollouts_t2 r2 ON r2.pr_id = p.event_id
  JOIN verdicts v ON v.t2_id = r2.event_id
"""


@pytest.mark.parametrize("scaffold", ["mini-bash", "swe-agent"])
def test_go_typescript_and_python_tasks_go_all_the_way_to_samples(tmp_path: Path, scaffold):
    repo, _ = git_repo(tmp_path / "shop", FILES)
    script = "demo" if scaffold == "mini-bash" else "demo-swe-agent"
    with serve(demo_script_path(script)) as double:
        overrides = ["sampler.mode=all", f"agent.scaffold={scaffold}"]
        config = demo_config(tmp_path / "work", double.url, overrides)
        ensure_tokenizer(repo, Path(config.filter.tokenizer))
        Registry(config.producer.registry, config.producer.mirrors).add(
            str(repo), branch="main", name="shop", backfill=1
        )
        bus = open_bus(config.bus)
        try:
            bus.create_topics(list(TOPICS), config.bus.partitions)
            watch(config, once=True)
            run_pipeline(config, bus)
        finally:
            bus.close()
    con = Lake(config.lake.root).connect()

    tasks = con.execute("SELECT language, function_name, request FROM tasks").fetchall()
    assert {(lang, name) for lang, name, _ in tasks} == set(EXPECTED)
    for language, name, request in tasks:
        title = {"go": "Go", "typescript": "TypeScript", "python": "Python"}[language]
        assert f"`{name}` is the {title} function at lines" in request
    rows = con.execute(PIPELINE).fetchall()
    assert len(rows) == len(EXPECTED)
    for language, name, label, recall, patch, samples in rows:
        assert (label, recall) == EXPECTED[(language, name)], name
        assert samples == 2
        if scaffold == "swe-agent" and language == "python":
            continue  # its Python sessions edit the def line (see demo-swe-agent.yaml)
        comment = "#" if language == "python" else "//"
        added = [line[1:].strip() for line in patch.splitlines() if re.match(r"\+[^+]", line)]
        assert added == [
            f"{comment} Note: {name} was reviewed; behaviour unchanged.",
            f"{comment} Contract: see the module documentation.",
        ], patch
    by_language = con.execute(
        "SELECT language, count(*) FROM tasks GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert by_language == [("go", 2), ("python", 1), ("typescript", 2)]

    spec = MixtureSpec.model_validate(
        {
            "name": "go-ts",
            "sources": [{"name": "web-and-go", "count": 100, "languages": ["go", "ts"]}],
        }
    )
    out, manifest = build(spec, config.lake.root, tmp_path / "mixtures", config.hash())
    chosen = pq.read_table(out / "data.parquet").column("task_id").to_pylist()
    languages = dict(con.execute("SELECT event_id, language FROM tasks").fetchall())
    assert chosen and {languages[t] for t in chosen} == {"go", "typescript"}

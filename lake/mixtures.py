"""Building a mixture from the lake, and reading one back.

`build` runs the spec's statement (see `mixture_spec`) once, writes the rows as Parquet and
JSONL (and in each export style: see `mixture_export`), a manifest and a report into a
temporary directory, and renames it to `<mixtures>/<name>` only when everything is written: a
mixture directory is always complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from trajlake.lake import asof
from trajlake.lake.dagger_mixture import add_dagger_samples
from trajlake.lake.files import PARQUET_SUFFIX
from trajlake.lake.mixture_export import (
    DATA_JSONL,
    DATA_PARQUET,
    MixtureError,
    export,
    styled_name,
)
from trajlake.lake.mixture_spec import MixtureSpec
from trajlake.lake.mixture_sql import mixture_sql
from trajlake.lake.objects import ObjectLake, is_object_store
from trajlake.lake.views import connect, schema_hint

MANIFEST = "manifest.json"
REPORT_PNG = "report.png"
#: Lake tables the trajectories view reads.
SOURCE_TABLES = (
    "tasks",
    "rollouts_t1",
    "rollouts_t2",
    "prs",
    "verdicts",
    "samples",
    "rollouts_dagger",
)
REPORT_COLUMNS = (
    "SELECT recall, truncation_ratio, patch_lines, tokens, repo, teacher_id FROM mixture"
)


#: A build runs as written: DuckDB would build its hash tables on the side it estimates smaller,
#: and its estimates for the lake are no guide (a view lists a zero-row schema file first), so
#: it could hold the text of every rollout in memory (> 24 GB at 200,000 rollouts). As written,
#: every join builds on metadata or on the chosen rows and the text streams through.
PLAN_AS_WRITTEN = "SET disabled_optimizers = 'join_order,build_side_probe_side'"


@dataclass(frozen=True)
class Shortfall:
    source: str
    target: bool | None  # None: the spec does not split target and other repositories
    wanted: int
    selected: int

    def __str__(self) -> str:
        side = (
            "" if self.target is None else (" (target repos)" if self.target else " (other repos)")
        )
        missing = self.wanted - self.selected
        return (
            f"source {self.source!r}{side}: {self.selected} of {self.wanted} "
            f"selected, {missing} short"
        )


def build(
    spec: MixtureSpec,
    lake_root: str | Path,
    out_root: str | Path,
    config_hash: str,
    force: bool = False,
    as_of: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Build `spec` from the lake into `<out_root>/<name>`; returns the directory and manifest.

    `as_of`, the manifest of an earlier build, builds from the lake as that build saw it (see
    trajlake.lake.asof): the same spec then gives the same bytes, whatever came in since.
    """
    state = recorded_state(as_of) if as_of is not None else None
    con = connect(lake_root, as_of=_as_of_times(state) if state is not None else None)
    try:
        if state is None:
            state = asof.record(con, SOURCE_TABLES)
        else:
            asof.check(con, state)
        where = str(lake_root) if is_object_store(lake_root) else str(Path(lake_root).resolve())
        provenance = {
            "config_hash": config_hash,
            "lake_root": where,
            "lake_files": lake_files(lake_root),
            "lake_state": state,
        } | ({"as_of": as_of["name"]} if as_of is not None else {})
        return write_mixture(con, spec, out_root, provenance, force)
    except duckdb.Error as e:
        raise MixtureError(f"cannot build mixture {spec.name}: {schema_hint(e)}") from None
    finally:
        con.close()


def _as_of_times(state: dict[str, Any]) -> dict[str, Any]:
    """The per-table times to build as of; a source table the recorded build did not read (a
    manifest older than rollouts_dagger) shows no rows, as that build saw none of them."""
    return dict.fromkeys(SOURCE_TABLES) | asof.times(state)


def recorded_state(manifest: dict[str, Any]) -> dict[str, Any]:
    """The lake state a manifest recorded; MixtureError when it has none."""
    state = manifest.get("lake_state")
    if not isinstance(state, dict):
        raise MixtureError(
            f"mixture {manifest.get('name')!r} records no lake state (built by an older "
            "trajlake): it cannot be rebuilt as of its lake; build it again without --as-of"
        )
    return state


def differing_files(manifest: dict[str, Any], earlier: dict[str, Any]) -> list[str]:
    """The data files of `manifest` whose bytes differ from those of `earlier`."""
    ours, theirs = manifest["data_sha256"], earlier.get("data_sha256", {})
    return [name for name, digest in ours.items() if theirs.get(name) != digest]


def write_mixture(
    con: duckdb.DuckDBPyConnection,
    spec: MixtureSpec,
    out_root: str | Path,
    provenance: dict[str, Any],
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Build `spec` from the `trajectories` relation of `con`; `provenance` (config hash, lake
    files) goes into the manifest as it is."""
    out_root = Path(out_root)
    final = out_root / spec.name
    if final.exists() and not force:
        raise MixtureError(f"mixture {final} exists: pick another name or pass --force")
    if any(source.kind == "svg" for source in spec.sources):
        _check_budget(con, spec.context_budget)
    con.execute(PLAN_AS_WRITTEN)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=out_root))
    tmp.chmod(0o755)  # mkdtemp makes it private; a mixture is for sharing
    try:
        sql = mixture_sql(spec)
        con.execute(
            f"CREATE OR REPLACE TABLE mixture AS {sql}"
        )  # not TEMP: see mixture_export.export
        dagger = add_dagger_samples(con, spec) if _has_dagger(spec) else None
        digests = export(con, tmp, spec.export_styles())
        manifest = _manifest(con, spec, sql) | provenance | {"data_sha256": digests}
        if dagger is not None:
            manifest["dagger"] = dagger
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        from trajlake.lake.report import write_report  # matplotlib loads slowly

        write_report(con.sql(REPORT_COLUMNS).to_arrow_table(), tmp / REPORT_PNG)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, manifest


def _has_dagger(spec: MixtureSpec) -> bool:
    return any(source.kind == "dagger" for source in spec.sources)


def _check_budget(con: duckdb.DuckDBPyConnection, budget: int) -> None:
    measured = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT unnest(budgets) FROM trajectories ORDER BY 1"
        ).fetchall()
    ]
    if budget not in measured:
        raise MixtureError(
            f"no sample is measured at context_budget {budget}: the lake has {measured or 'none'}"
            "; pick one of those, or add the budget to filter.budgets and re-run the filter"
        )


def _manifest(con: duckdb.DuckDBPyConnection, spec: MixtureSpec, sql: str) -> dict[str, Any]:
    selected = dict(
        ((source, target), n)
        for source, target, n in con.execute(
            "SELECT source, target_repo, count(*) FROM mixture GROUP BY ALL"
        ).fetchall()
    )
    split = spec.specialization is not None
    styled = [styled_name(style) for style in spec.export_styles()]
    shortfalls = [
        Shortfall(source, target if split else None, wanted, selected.get((source, target), 0))
        for (source, target), wanted in spec.quotas().items()
        if selected.get((source, target), 0) < wanted
    ]
    return {
        "name": spec.name,
        "seed": spec.seed,
        "spec": spec.model_dump(mode="json", exclude_none=True),
        "sql": sql.strip(),
        "samples": sum(selected.values()),
        "counts": _source_counts(spec, selected),
        "shortfalls": [str(s) for s in shortfalls],
        "by_repo": _group_counts(con, "repo"),
        "by_teacher": _group_counts(con, "teacher_id"),
        "by_rollout": _group_counts(con, "rollout"),
        "source_config_hashes": sorted(_group_counts(con, "config_hash")),
        "files": [DATA_PARQUET, DATA_JSONL, *styled, MANIFEST, REPORT_PNG],
    }


def _source_counts(
    spec: MixtureSpec, selected: dict[tuple[str, bool], int]
) -> dict[str, dict[str, int]]:
    quotas = spec.quotas()
    counts = {}
    for source in spec.sources:
        sides = {"target": True, "other": False}
        counts[source.name] = {
            "wanted": sum(quotas[(source.name, t)] for t in sides.values()),
            "selected": sum(selected.get((source.name, t), 0) for t in sides.values()),
        } | {
            f"{side}_{what}": (quotas if what == "wanted" else selected).get((source.name, t), 0)
            for side, t in sides.items()
            for what in ("wanted", "selected")
        }
    return counts


def _group_counts(con: duckdb.DuckDBPyConnection, column: str) -> dict[str, int]:
    rows = con.execute(
        f"SELECT {column}, count(*) FROM mixture GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall()
    return {str(key): n for key, n in rows}


def lake_files(lake_root: str | Path) -> list[str]:
    """The lake's data files the build could read, relative to the lake root, sorted (on
    object storage: the objects that manifests make visible)."""
    if is_object_store(lake_root):
        objects = ObjectLake.open(str(lake_root))
        return sorted(
            path.removeprefix(f"{objects.base}/")
            for table in SOURCE_TABLES
            for path in objects.data_paths(table)
        )
    root = Path(lake_root)
    return sorted(
        str(path.relative_to(root))
        for table in SOURCE_TABLES
        for path in (root / table).rglob(f"*{PARQUET_SUFFIX}")
    )


def read_manifest(out_root: str | Path, name: str) -> dict[str, Any]:
    """The manifest of mixture `name` (a name under `out_root`, a directory, or the path of a
    manifest file)."""
    path = Path(name)
    if not (path.is_file() and path.suffix == ".json"):
        path = mixture_dir(out_root, name) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MixtureError(f"cannot read mixture manifest {path}: {e}") from None


def mixture_dir(out_root: str | Path, name: str) -> Path:
    """`name` as a path if it is a mixture directory, else `<out_root>/<name>`."""
    for candidate in (Path(name), Path(out_root) / name):
        if (candidate / MANIFEST).is_file():
            return candidate
    built = sorted(p.parent.name for p in Path(out_root).glob(f"*/{MANIFEST}"))
    raise MixtureError(
        f"no mixture {name!r} in {out_root} (built: {', '.join(built) or 'none'}); "
        "build one with `trajlake mixture build SPEC.yaml`"
    )

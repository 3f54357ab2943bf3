"""`trajlake mixture build|show|check`: training sets chosen with SQL from the lake."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trajlake.config import Config

BUILD_HELP = """\
Build a mixture from a spec (YAML). The spec names sources, each a condition on the
`trajectories` view with a count or a share; see `trajlake mixture example` for one with
every field. Writes <lake.mixtures>/<name>/: data.parquet, data.jsonl, manifest.json (the SQL,
counts per source, seed, lake files read and lake state, config hash) and report.png.

--as-of MANIFEST builds from the lake as that earlier build saw it (each table up to the newest
row it showed): the same spec gives byte-identical data after new events and compaction."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    mixture = sub.add_parser("mixture", help="build training sets from the lake with SQL")
    msub = mixture.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = msub.add_parser(
        "build",
        help="build a mixture from a spec",
        description=BUILD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("spec", type=Path, help="the mixture spec (YAML)")
    build.add_argument("--force", action="store_true", help="replace a mixture of that name")
    build.add_argument(
        "--as-of",
        metavar="MANIFEST",
        help="build from the lake as this mixture saw it (a name, directory or manifest.json)",
    )
    build.set_defaults(func=cmd_build)
    show = msub.add_parser("show", help="print a mixture's manifest: counts, seed, shortfalls")
    show.add_argument("name", help="mixture name (or its directory)")
    show.add_argument("--sql", action="store_true", help="print the SQL it was built with")
    show.set_defaults(func=cmd_show)
    check = msub.add_parser(
        "check", help="compare samples with what the rollout scaffold sends at inference"
    )
    check.add_argument("name", help="mixture name (or its directory)")
    check.set_defaults(func=cmd_check)
    msub.add_parser("example", help="print a spec with every field, documented").set_defaults(
        func=cmd_example, needs_config=False
    )


def cmd_build(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake.mixture_spec import load_spec
    from trajlake.lake.mixtures import build, differing_files, read_manifest

    spec = load_spec(args.spec)
    earlier = read_manifest(config.lake.mixtures, args.as_of) if args.as_of else None
    directory, manifest = build(
        spec, config.lake.root, config.lake.mixtures, config.hash(), args.force, earlier
    )
    _print_summary(manifest)
    print(f"\nwrote {directory}/ (data.parquet, data.jsonl, manifest.json, report.png)")
    if earlier is None or earlier["spec"] != manifest["spec"]:
        return 0
    differ = differing_files(manifest, earlier)
    if differ:
        print(f"{', '.join(differ)} differ from mixture {earlier['name']}'s", file=sys.stderr)
        return 1
    print(f"data.parquet and data.jsonl are byte-identical to mixture {earlier['name']}'s")
    return 0


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake.mixtures import read_manifest

    manifest = read_manifest(config.lake.mixtures, args.name)
    _print_summary(manifest)
    print(
        f"seed {manifest['seed']} · config {manifest['config_hash']} · "
        f"{len(manifest['lake_files'])} lake files read from {manifest['lake_root']}"
    )
    if args.sql:
        print("\n" + manifest["sql"])
    return 0


def _print_summary(manifest: dict) -> None:
    """Counts per source (split into target and other repos when the spec specializes)."""
    split = "specialization" in manifest["spec"]
    print(f"mixture {manifest['name']}: {manifest['samples']} samples")
    header = f"  {'source':<20} {'wanted':>7} {'selected':>9}"
    print(header + (f" {'target':>7} {'other':>7}" if split else ""))
    for name, c in manifest["counts"].items():
        line = f"  {name:<20} {c['wanted']:>7} {c['selected']:>9}"
        print(line + (f" {c['target_selected']:>7} {c['other_selected']:>7}" if split else ""))
    for key in ("by_rollout", "by_repo", "by_teacher"):
        print(
            f"  {key.replace('_', ' ')}: " + ", ".join(f"{k} {n}" for k, n in manifest[key].items())
        )
    for shortfall in manifest["shortfalls"]:
        print(f"  short: {shortfall}", file=sys.stderr)


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    import pyarrow.parquet as pq

    from trajlake.consumers.scaffold_check import check_sample
    from trajlake.lake.mixtures import DATA_PARQUET, mixture_dir

    directory = mixture_dir(config.lake.mixtures, args.name)
    rows = pq.read_table(
        directory / DATA_PARQUET, columns=["sample_id", "messages", "tools", "request"]
    )
    failed = 0
    for row in rows.to_pylist():
        problem = check_sample(row["messages"], row["tools"], row["request"])
        if problem:
            failed += 1
            if failed == 1:
                print(f"sample {row['sample_id']}: {problem}")
    if failed:
        print(f"{failed} of {rows.num_rows} samples differ from the scaffold", file=sys.stderr)
        return 1
    print(f"{rows.num_rows} samples match the scaffold (system prompt, tools, observations)")
    return 0


def cmd_example(args: argparse.Namespace, overrides: list[str]) -> int:
    from trajlake.lake import mixture_spec

    print(mixture_spec.EXAMPLE)
    return 0

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
counts per source, seed, lake files read and lake state, config hash) and report.png; with
`export: {styles: [hermes]}` also data.hermes.jsonl (turns {role, content, train}, tool calls
written into the text; styles: hermes, xml, raw), the shape axolotl and LLaMA-Factory read.

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
        "check", help="compare samples with what their rollout scaffold sends at inference"
    )
    check.add_argument("name", help="mixture name (or its directory)")
    check.add_argument(
        "--scaffold",
        metavar="FILE",
        action="append",
        default=[],
        help="a scaffold file samples were generated with (repeatable); built-in scaffolds "
        "and agent.scaffold are known without it",
    )
    check.add_argument(
        "--style",
        action="append",
        default=[],
        metavar="STYLE",
        help="also check data.STYLE.jsonl (hermes, xml, raw): every row parses back to its "
        "data.parquet row",
    )
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
    print(f"\nwrote {directory}/ ({', '.join(manifest['files'])})")
    if earlier is None or earlier["spec"] != manifest["spec"]:
        return 0
    differ = differing_files(manifest, earlier)
    if differ:
        print(f"{', '.join(differ)} differ from mixture {earlier['name']}'s", file=sys.stderr)
        return 1
    same = ", ".join(manifest["data_sha256"])
    print(f"{same} are byte-identical to mixture {earlier['name']}'s")
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

    from trajlake.consumers.scaffold_check import check_rows, known_scaffolds, unknown_scaffold
    from trajlake.lake.mixture_export import styled_file
    from trajlake.lake.mixtures import DATA_PARQUET, mixture_dir

    directory = mixture_dir(config.lake.mixtures, args.name)
    for style in args.style:  # before the long part: a style the mixture has no file for
        styled_file(directory, style)
    known = known_scaffolds(config.agent.scaffold, args.scaffold)
    columns = ["sample_id", "messages", "tools", "request", "scaffold_id"]
    batches = pq.ParquetFile(directory / DATA_PARQUET).iter_batches(256, columns=columns)
    report = check_rows((row for batch in batches for row in batch.to_pylist()), known)
    if report.first:
        print(report.first)
    for scaffold_id, samples in report.unknown.items():
        print(unknown_scaffold(scaffold_id, samples, known), file=sys.stderr)
    failed = report.differ + sum(report.unknown.values())
    if failed:
        print(f"{failed} of {report.samples} samples differ from their scaffold", file=sys.stderr)
    else:
        print(f"{report.samples} samples match their scaffold (prompts, tools, observations):")
        for scaffold_id, samples in report.matched.most_common():
            print(f"  {samples:>7}  {scaffold_id}  ({known[scaffold_id].source})")
    styled_ok = all([_check_style(directory, style) for style in args.style])
    return 0 if not failed and styled_ok else 1


def _check_style(directory: Path, style: str) -> bool:
    from trajlake.lake.mixture_export import check_styled, styled_name

    report = check_styled(directory, style)
    if report.differ:
        print(report.first)
        name = styled_name(style)
        print(
            f"{report.differ} of {report.rows} rows of {name} do not parse back to their "
            "data.parquet row",
            file=sys.stderr,
        )
        return False
    print(f"{report.rows} rows of {styled_name(style)} parse back to their data.parquet rows")
    return True


def cmd_example(args: argparse.Namespace, overrides: list[str]) -> int:
    from trajlake.lake import mixture_spec

    print(mixture_spec.EXAMPLE_FILE.read_text(), end="")
    return 0

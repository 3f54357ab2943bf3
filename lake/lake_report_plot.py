"""The picture of `trajlake report`: nine panels drawn from `LakeNumbers` with matplotlib."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from trajlake.lake.lake_report import LakeNumbers

BLUE, ORANGE = "#4c72b0", "#dd8452"
TOP_REPOS = 6  # repositories drawn over time; the rest are summed
LABEL = 26  # characters of a teacher or scaffold id shown


def draw(numbers: LakeNumbers, path: Path) -> None:
    """Write the PNG of the report to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(20, 15))
    panels = (
        _activity,
        _recall,
        _truncation,
        _patches,
        _exits,
        _spend,
        _dead_letters,
        _tests,
        _summary,
    )
    for ax, panel in zip(axes.flat, panels, strict=True):
        panel(ax, numbers)
    fig.suptitle(f"trajlake lake report: {numbers.root}", fontsize=14)
    fig.tight_layout()
    fig.savefig(path, dpi=72, format="png", metadata={"Software": None})
    plt.close(fig)


def _activity(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("tasks and rollouts over time per repository, cumulative")
    if not numbers.timeline:
        return _nothing(ax, "no tasks yet")
    import matplotlib.dates as mdates

    series: dict[tuple[str, str], list] = defaultdict(list)
    rollouts: dict[str, int] = defaultdict(int)
    for repo, kind, at in numbers.timeline:
        series[(repo, kind)].append(at)
        rollouts[repo] += kind == "rollouts"
    shown = sorted(rollouts, key=lambda r: (-rollouts[r], r))[:TOP_REPOS]
    rest = [r for r in rollouts if r not in shown]
    for i, repo in enumerate([*shown, *(["other"] if rest else [])]):
        color = f"C{i}"
        for kind, style in (("tasks", "--"), ("rollouts", "-")):
            times = sorted(
                t for r in (rest if repo == "other" else [repo]) for t in series[(r, kind)]
            )
            if times:
                label = f"{len(rest)} other repos" if repo == "other" else repo
                ax.step(times, range(1, len(times) + 1), style, where="post", color=color,
                        label=label if kind == "rollouts" else None)  # fmt: skip
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.plot([], [], "k--", label="tasks")
    ax.plot([], [], "k-", label="rollouts (t1 + t2)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)


def _recall(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("recall of P1 in P2, per teacher / scaffold")
    if not numbers.recalls:
        return _nothing(ax, "no verdicts with a recall yet")
    labels = ["\n".join(_short(p) for p in key.split(" / ")) for key in numbers.recalls]
    values = list(numbers.recalls.values())
    ax.boxplot(values, showmeans=True)  # vertical: `vert`/`orientation` differ by version
    ax.set_xticks(range(1, len(values) + 1), labels, fontsize=8)
    for i, group in enumerate(values, 1):
        ax.annotate(f"n={len(group)}", (i, 1.04), ha="center", fontsize=8)
    ax.set_ylim(-0.05, 1.12)
    ax.set_ylabel("recall (triangle: mean)")


def _truncation(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("truncation ratio at each budget")
    if not numbers.ratios:
        return _nothing(ax, "no measured samples yet")
    budgets = list(numbers.ratios)
    ax.boxplot(list(numbers.ratios.values()), showmeans=True)
    ax.set_xticks(range(1, len(budgets) + 1), [f"{b:,}" for b in budgets])
    for i, ratios in enumerate(numbers.ratios.values(), 1):
        whole = sum(r == 1 for r in ratios) / len(ratios)
        ax.annotate(f"{whole:.0%} fit", (i, 1.04), ha="center", fontsize=8)
    ax.set_ylim(-0.05, 1.12)
    ax.set_xlabel("context budget (tokens)")
    ax.set_ylabel("share of messages kept")


def _patches(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("patch size (changed lines)")
    if not numbers.patch_lines:
        return _nothing(ax, "no measured patches yet")
    top = max(max(v) for v in numbers.patch_lines.values())
    step = max(1, (top + 1) // 30 + 1)  # at most ~30 bins, each centred on its first size
    bins = [edge - 0.5 for edge in range(0, top + step + 1, step)]
    for (rollout, lines), color in zip(numbers.patch_lines.items(), (BLUE, ORANGE), strict=False):
        ax.hist(lines, bins=bins, alpha=0.6, color=color, label=f"{rollout} (n={len(lines)})")
    ax.set_xlabel("added + removed lines")
    ax.set_ylabel("rollouts")
    ax.legend(fontsize=8)


def _exits(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("exit statuses")
    rows = numbers.tables["exits"].rows
    if not rows:
        return _nothing(ax, "no rollouts yet")
    statuses = sorted({status for _, status, _ in rows})
    counts = {(rollout, status): n for rollout, status, n in rows}
    for j, (rollout, color) in enumerate((("t1", BLUE), ("t2", ORANGE))):
        values = [counts.get((rollout, s), 0) for s in statuses]
        bars = ax.barh([i + 0.4 * j for i in range(len(statuses))], values, 0.4, color=color,
                       label=rollout)  # fmt: skip
        ax.bar_label(bars, fontsize=8)
    ax.set_yticks([i + 0.2 for i in range(len(statuses))], statuses)
    ax.set_xlim(0, max(n for *_, n in rows) * 1.3)  # room for the counts and the legend
    ax.set_xlabel("rollouts")
    ax.legend(fontsize=8, loc="lower right")


def _spend(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title(f"teacher tokens per accepted sample (recall >= {numbers.min_recall:g})")
    table = numbers.tables["spend"]
    if not table.rows:
        return _nothing(ax, "no rollouts yet")
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    bars = ax.bar(range(len(rows)), [r["tokens_per_accepted"] or 0 for r in rows], color=BLUE)
    notes = [
        f"{r['tokens_per_accepted']:,.0f} tokens\n${r['cost_per_accepted']:.4f}\n"
        f"{r['accepted']} of {r['rollouts']} rollouts"
        if r["accepted"]
        else f"none accepted\n{r['tokens']:,} tokens spent"
        for r in rows
    ]
    ax.bar_label(bars, notes, fontsize=8)
    ax.set_xticks(range(len(rows)), [_short(r["teacher_id"]) for r in rows], fontsize=8)
    ax.set_ylabel("teacher tokens (prompt + completion)")
    ax.margins(y=0.3)


def _dead_letters(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("dead letters by stage and error type")
    rows = numbers.tables["dead_letters"].rows
    if not rows:
        return _nothing(ax, "no dead letters")
    stages = sorted({stage for stage, *_ in rows})
    left = [0] * len(stages)
    for i, error_type in enumerate(sorted({e for _, e, *_ in rows})):
        values = [sum(n for s, e, n, _ in rows if s == st and e == error_type) for st in stages]
        ax.barh(stages, values, left=left, color=f"C{i}", label=error_type)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, total in enumerate(left):
        ax.annotate(str(total), (total, y), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_xlabel("dead letters")
    ax.legend(fontsize=8)


#: tests outcomes drawn, in order, with their colours
TEST_OUTCOMES = (
    ("ok", "#55a868"), ("broken", "#c44e52"), ("flaky", "#ccb974"),
    ("timeout_or_error", "#8172b3"), ("no_tests", "#bbbbbb"), ("untested", "#eeeeee"),
)  # fmt: skip


def _tests(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("soft recall label against the repository's tests")
    table = numbers.tables["tests"]
    if not table.rows:
        return _nothing(ax, "no rollouts yet")
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    labels = [r["recall_label"] for r in rows]
    left = [0] * len(rows)
    for outcome, color in TEST_OUTCOMES:
        values = [r[outcome] for r in rows]
        ax.barh(labels, values, left=left, color=color, edgecolor="grey", label=outcome)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("rollouts (a T1 takes its best T2's label)")
    ax.legend(fontsize=8, loc="lower right")


def _summary(ax: Axes, numbers: LakeNumbers) -> None:
    ax.set_title("rows per table")
    ax.axis("off")
    lines = [f"{topic:<14}{n:>9,}" for topic, n in numbers.counts.items()]
    lines += ["", f"made {numbers.made_at:%Y-%m-%d %H:%M} UTC", "numbers: lake-report.html"]
    ax.text(0.05, 0.95, "\n".join(lines), family="monospace", va="top", fontsize=10)


def _nothing(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color="grey", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _short(text: str) -> str:
    return text if len(text) <= LABEL else text[: LABEL - 1] + "…"

"""The PNG report of a mixture: what was selected, at a glance."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

#: (column, title) of the histograms, in the order they are drawn.
HISTOGRAMS = (
    ("recall", "verifier recall"),
    ("truncation_ratio", "truncation ratio at the budget"),
    ("patch_lines", "patch lines"),
    ("tokens", "tokens after truncation"),
)
TOP = 12  # bars per count chart


def write_report(mixture: pa.Table, path: Path) -> None:
    """Histograms of recall, truncation ratio, patch lines and tokens; counts per repo and
    teacher (the TOP largest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (column, title) in zip(axes.flat, HISTOGRAMS, strict=False):
        values = [v for v in mixture.column(column).to_pylist() if v is not None]
        ax.hist(values, bins=20, color="#4c72b0")
        ax.set_title(f"{title} (n={len(values)})")
    for ax, column in zip(axes.flat[4:], ("repo", "teacher_id"), strict=True):
        counts = Counter(mixture.column(column).to_pylist()).most_common(TOP)
        ax.barh([str(k)[:32] for k, _ in counts][::-1], [n for _, n in counts][::-1])
        ax.set_title(f"samples per {column}")
    fig.suptitle(f"{mixture.num_rows} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)

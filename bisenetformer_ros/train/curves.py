"""Learning-curve plots from a run's ``log.jsonl`` (and optional held-out scores of snapshots).

A curve says more than a table of losses: whether the run converged, diverged or was still improving when it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_log(path: str | Path) -> list[dict[str, Any]]:
    records = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            records.append(json.loads(line))
    return records


def plot_training_curve(
    log_path: str | Path, out_png: str | Path, val_points: list[dict[str, Any]] | None = None, title: str = ""
) -> Path:
    """Loss terms (log scale) and learning rate over iterations; held-out mIoU/PQ of snapshots on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    if not records:
        raise ValueError(f"'{log_path}' has no log records")
    its = [r["iter"] for r in records]
    ncols = 2 if val_points else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.2), squeeze=False)
    ax = axes[0][0]
    for key, label in (
        ("loss", "total (weighted, all layers)"),
        ("loss_ce", "CE"),
        ("loss_mask", "mask BCE"),
        ("loss_dice", "dice"),
    ):
        if key in records[0]:
            ax.plot(its, [r.get(key) for r in records], label=label, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (final layer terms unweighted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(its, [r.get("lr") for r in records], color="gray", linestyle=":", linewidth=1)
    ax2.set_ylabel("learning rate", color="gray")
    if val_points:
        axv = axes[0][1]
        vi = [p["iter"] for p in val_points]
        for key in ("mIoU", "PQ"):
            axv.plot(vi, [p.get(key) for p in val_points], marker="o", label=f"held-out {key}")
        axv.set_xlabel("iteration")
        axv.set_ylabel("%")
        axv.set_ylim(0, 100)
        axv.grid(alpha=0.3)
        axv.legend(fontsize=8)
        axv.set_title("held-out synthetic split")
    elapsed = records[-1].get("elapsed_min")
    fig.suptitle(title + (f"  ({elapsed:.0f} min)" if elapsed else ""))
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png

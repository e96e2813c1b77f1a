"""Evaluation reports: one JSON file for machines and one self-contained HTML page for people.

The HTML embeds every plot as a base64 PNG (no external files, so it can be attached to a ticket or CI artefact as
one file): per-class IoU bars, PQ/SQ/RQ for all/things/stuff, a latency histogram and a per-frame latency timeline
with stages stacked, a grid of overlay frames spread over the bag and the worst frames next to their ground truth.
The same plots are also written as PNG files under ``plots/``, and ``overview.png`` puts the headline plots on one
image for places that cannot show HTML (README, chat).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bisenetformer_ros.evaluation.latency import percentile

#: Order in which per-stage latencies are stacked in the plots (others follow alphabetically).
STAGE_ORDER = ("decode", "preprocess", "inference", "postprocess", "render", "publish", "transport")


@dataclass
class FrameThumb:
    """Small images of one frame for the report (panels side by side), with its frame-level score."""

    index: int
    stamp: int
    score: float | None  # frame mIoU in % (None without ground truth)
    panels: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (title, HxWx3 uint8 RGB)
    note: str = ""


def thumbnail(image: np.ndarray, width: int = 240) -> np.ndarray:
    """Downscale an RGB (or label-colour) image to ``width`` pixels wide, nearest for crisp label edges."""
    import cv2

    h, w = image.shape[:2]
    if w <= width:
        return np.ascontiguousarray(image)
    height = max(1, round(h * width / w))
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)


# -- plots ---------------------------------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _iou_values(semantic: Mapping[str, Any], names: Sequence[str]) -> list[float | None]:
    per = semantic.get("per_class_iou")
    if isinstance(per, Mapping):
        return [None if per.get(n) is None else float(per[n]) for n in names]
    if per is None:
        return [None] * len(names)
    vals = list(per)
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in vals]


def plot_class_iou(semantic: Mapping[str, Any], names: Sequence[str], colors: Sequence[Sequence[int]]) -> bytes:
    plt = _plt()
    vals = _iou_values(semantic, names)
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.2))
    ys = np.arange(len(names))
    shown = [0.0 if v is None else v for v in vals]
    ax.barh(ys, shown, color=[tuple(c / 255 for c in col) for col in colors], edgecolor="black", linewidth=0.4)
    for y, v in zip(ys, vals, strict=True):
        ax.text(
            min(v if v is not None else 0, 100) + 1,
            y,
            "n/a (absent)" if v is None else f"{v:.1f}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(ys, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    miou = semantic.get("mIoU")
    ax.axvline(float(miou) if miou is not None else 0, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("IoU (%)")
    ax.set_title(f"Per-class IoU (mIoU {float(miou):.2f} %)" if miou is not None else "Per-class IoU")
    return _png(fig)


def plot_pq(panoptic: Mapping[str, Any]) -> bytes:
    plt = _plt()
    groups = [("All", ""), ("Things", "_th"), ("Stuff", "_st")]
    metrics = ("PQ", "SQ", "RQ")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(len(groups))
    width = 0.26
    for i, m in enumerate(metrics):
        vals = [float(panoptic.get(f"{m}{suffix}", float("nan")) or 0.0) for _, suffix in groups]
        bars = ax.bar(x + (i - 1) * width, vals, width, label=m)
        for b, v in zip(bars, vals, strict=True):
            ax.text(b.get_x() + b.get_width() / 2, v + 1, f"{v:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x, [g for g, _ in groups])
    ax.set_ylim(0, 110)
    ax.set_ylabel("%")
    ax.set_title("Panoptic quality: things / stuff")
    ax.legend(fontsize=8, ncol=3, loc="upper right")
    return _png(fig)


def _stage_keys(stages: Mapping[str, Sequence[float]]) -> list[str]:
    ordered = [s for s in STAGE_ORDER if s in stages]
    return ordered + sorted(s for s in stages if s not in ordered)


def plot_latency_hist(total_ms: Sequence[float], title: str = "Per-frame latency") -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    arr = np.asarray(total_ms, dtype=np.float64)
    if arr.size:
        ax.hist(arr, bins=min(40, max(5, arr.size // 3)), color="#4477aa", edgecolor="white")
        for q, style in ((50, "-"), (99, "--")):
            v = percentile(arr, q)
            ax.axvline(v, color="#cc3311", linestyle=style, linewidth=1.2, label=f"p{q} {v:.1f} ms")
        ax.legend(fontsize=8)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title(title)
    return _png(fig)


def plot_latency_timeline(stages: Mapping[str, Sequence[float]], total_ms: Sequence[float]) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    keys = _stage_keys(stages)
    n = len(total_ms)
    x = np.arange(n)
    if keys and all(len(stages[k]) == n for k in keys):
        ax.stackplot(x, *[np.asarray(stages[k], dtype=np.float64) for k in keys], labels=keys, alpha=0.85)
    ax.plot(x, np.asarray(total_ms, dtype=np.float64), color="black", linewidth=0.8, label="total")
    ax.set_xlabel("frame")
    ax.set_ylabel("ms")
    ax.set_title("Latency per frame (stages stacked)")
    ax.legend(fontsize=7, loc="upper right", ncol=min(4, len(keys) + 1))
    ax.set_xlim(0, max(1, n - 1))
    return _png(fig)


def compose_thumbs(thumbs: Sequence[FrameThumb], title: str) -> bytes:
    """A figure with one row per frame and one column per panel."""
    plt = _plt()
    if not thumbs:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no frames", ha="center")
        return _png(fig)
    cols = max(len(t.panels) for t in thumbs)
    h, w = thumbs[0].panels[0][1].shape[:2]
    scale = 2.6 / max(w, 1)
    fig, axes = plt.subplots(len(thumbs), cols, figsize=(cols * 2.6, len(thumbs) * h * scale + 0.6), squeeze=False)
    for r, t in enumerate(thumbs):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(t.panels):
                name, img = t.panels[c]
                ax.imshow(img, interpolation="nearest")
                label = f"#{t.index} {name}"
                if c == 0 and t.score is not None:
                    label += f"  mIoU {t.score:.1f}%"
                if c == 0 and t.note:
                    label += f"  {t.note}"
                ax.set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def plot_overview(report: Mapping[str, Any], pngs: Mapping[str, bytes]) -> bytes:
    """One image with the headline numbers and the main plots (for README / places without HTML)."""
    plt = _plt()
    from PIL import Image  # matplotlib depends on Pillow

    keys = [k for k in ("class_iou", "pq", "latency_hist", "latency_timeline", "grid") if k in pngs]
    imgs = [np.asarray(Image.open(io.BytesIO(pngs[k])).convert("RGB")) for k in keys]
    fig = plt.figure(figsize=(14, 4 + 4 * math.ceil(len(imgs) / 2)))
    fig.text(0.01, 0.995, "BiSeNetFormer evaluation - " + headline(report), va="top", fontsize=12, weight="bold")
    rows = math.ceil(len(imgs) / 2) or 1
    for i, img in enumerate(imgs):
        ax = fig.add_subplot(rows, 2, i + 1)
        ax.imshow(img)
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _png(fig)


# -- text ----------------------------------------------------------------------------------------------------------
def headline(report: Mapping[str, Any]) -> str:
    """One line with the figures people ask for first: mIoU, PQ, FPS, p99 latency, frames scored/skipped."""
    parts: list[str] = []
    sem = report.get("semantic") or {}
    pan = report.get("panoptic") or {}
    if sem.get("mIoU") is not None:
        parts.append(f"mIoU {float(sem['mIoU']):.2f} %")
    if pan.get("PQ") is not None:
        parts.append(f"PQ {float(pan['PQ']):.2f} %")
    tracked = (report.get("video") or {}).get("tracking") or {}
    if tracked.get("STQ") is not None:
        parts.append(
            f"STQ {float(tracked['STQ']):.2f} %, VPQ {float(tracked.get('VPQ') or 0.0):.2f} %, "
            f"{int(tracked.get('id_switches', 0))} ID switches"
        )
    lat = report.get("latency") or {}
    if lat.get("fps"):
        parts.append(f"{float(lat['fps']):.1f} FPS")
    total = lat.get("total") or {}
    if total.get("count"):
        parts.append(f"p99 latency {float(total['p99_ms']):.1f} ms")
    fr = report.get("frames") or {}
    if fr:
        skipped = sum((fr.get("skipped") or {}).values())
        parts.append(f"{fr.get('scored', 0)}/{fr.get('total', 0)} frames scored, {skipped} skipped")
    return ", ".join(parts) if parts else "no results"


def video_rows(video: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Rows of the tracking table: STQ, AQ, SQ, VPQ, VPQ^k, ID switches, mostly tracked/lost, tracks."""
    on = video.get("tracking") or {}
    off = video.get("per_frame_ids") or {}
    rows: list[tuple[str, Any, Any]] = [
        (name, on.get(key), off.get(key))
        for name, key in (("STQ %", "STQ"), ("AQ %", "AQ"), ("SQ (mIoU) %", "SQ"), ("VPQ %", "VPQ"))
    ]
    for k in on.get("VPQ_k") or off.get("VPQ_k") or {}:
        rows.append((f"VPQ k={k} %", (on.get("VPQ_k") or {}).get(k), (off.get("VPQ_k") or {}).get(k)))
    for name, key in (
        ("ID switches", "id_switches"),
        ("mostly tracked %", "mostly_tracked"),
        ("mostly lost %", "mostly_lost"),
        ("ground-truth tracks", "gt_tracks"),
        ("predicted tracks", "pred_tracks"),
    ):
        rows.append((name, on.get(key), off.get(key)))
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return html.escape(str(v))


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 16px;min-width:130px}
.card .v{font-size:1.6em;font-weight:600} .card .k{color:#666;font-size:.85em}
table{border-collapse:collapse;font-size:.85em;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
img{max-width:100%} .warn{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 10px;margin:4px 0}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:12px} code{background:#f3f3f3;padding:1px 4px}
"""


def render_html(report: Mapping[str, Any], pngs: Mapping[str, bytes]) -> str:
    src = report.get("source") or {}
    fr = report.get("frames") or {}
    sem = report.get("semantic") or {}
    pan = report.get("panoptic") or {}
    lat = report.get("latency") or {}
    total = lat.get("total") or {}

    cards: list[tuple[str, str]] = []
    if sem.get("mIoU") is not None:
        cards.append(("mIoU", f"{float(sem['mIoU']):.2f} %"))
    if pan.get("PQ") is not None:
        cards.append(("PQ", f"{float(pan['PQ']):.2f} %"))
    if lat.get("fps"):
        cards.append(("throughput", f"{float(lat['fps']):.1f} FPS"))
    if total.get("count"):
        cards.append(("latency p50 / p99", f"{total['p50_ms']:.1f} / {total['p99_ms']:.1f} ms"))
    skipped = fr.get("skipped") or {}
    cards.append(("frames scored", f"{fr.get('scored', 0)} / {fr.get('total', 0)}"))
    cards.append(("frames skipped", str(sum(skipped.values()))))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(str(report.get('title', 'BiSeNetFormer evaluation')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(str(report.get('title', 'BiSeNetFormer evaluation')))}</h1>",
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='k'>{html.escape(k)}</div></div>"
            for k, v in cards
        )
        + "</div>",
    ]
    warnings = list(report.get("warnings") or [])
    if warnings:
        parts.append("<h2>Warnings</h2>" + "".join(f"<div class='warn'>{html.escape(str(w))}</div>" for w in warnings))

    parts.append("<h2>Run</h2>")
    parts.append(
        _table(
            [(k, v if not isinstance(v, (dict, list)) else json.dumps(v)) for k, v in src.items()], ("setting", "value")
        )
    )
    rows = [
        ("total frames", fr.get("total", 0)),
        ("scored", fr.get("scored", 0)),
        ("without ground truth", fr.get("without_gt", 0)),
    ]
    rows += [(f"skipped: {k}", v) for k, v in skipped.items()]
    parts.append(_table(rows, ("frames", "count")))

    if "class_iou" in pngs or "pq" in pngs:
        parts.append("<h2>Accuracy</h2><div class='grid2'>")
        for key, alt in (("class_iou", "per-class IoU"), ("pq", "panoptic quality")):
            if key in pngs:
                parts.append(f"<div>{_img_tag(pngs[key], alt)}</div>")
        parts.append("</div>")
        if sem:
            parts.append(
                _table([("mIoU", sem.get("mIoU")), ("pixel accuracy", sem.get("pixel_accuracy"))], ("semantic", "%"))
            )
        if pan:
            keys = [k for k in ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st") if k in pan]
            parts.append(_table([(k, pan[k]) for k in keys], ("panoptic", "%")))
    video = report.get("video") or {}
    if video.get("tracking") or video.get("per_frame_ids"):
        parts.append("<h2>Tracking (video panoptic metrics)</h2>")
        parts.append(_table(video_rows(video), ("metric", "tracker", "per-frame ids (baseline)")))
        if "track_strip" in pngs:
            parts.append(f"<div>{_img_tag(pngs['track_strip'], 'frames coloured by track')}</div>")

    if total.get("count"):
        parts.append("<h2>Latency</h2>")
        stage_rows = []
        for name, s in (lat.get("stages") or {}).items():
            if s.get("count"):
                stage_rows.append((name, s["mean_ms"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]))
        stage_rows.append(
            ("total", total["mean_ms"], total["p50_ms"], total["p90_ms"], total["p99_ms"], total["max_ms"])
        )
        parts.append(_table(stage_rows, ("stage", "mean ms", "p50", "p90", "p99", "max")))
        if lat.get("note"):
            parts.append(f"<p>{html.escape(str(lat['note']))}</p>")
        parts.append("<div class='grid2'>")
        for key, alt in (("latency_hist", "latency histogram"), ("latency_timeline", "latency timeline")):
            if key in pngs:
                parts.append(f"<div>{_img_tag(pngs[key], alt)}</div>")
        parts.append("</div>")

    if "grid" in pngs:
        parts.append("<h2>Frames across the bag</h2>" + _img_tag(pngs["grid"], "overlay grid"))
    if "worst" in pngs:
        parts.append("<h2>Worst frames</h2>" + _img_tag(pngs["worst"], "worst frames"))
    parts.append(
        "<p style='color:#888;font-size:.8em'>Generated by bisenetformer_ros "
        + html.escape(str(report.get("version", "")))
        + " - full numbers in report.json</p></body></html>"
    )
    return "\n".join(parts)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(
    report: dict[str, Any],
    out_dir: str | Path,
    *,
    class_table: Any = None,
    latency_series: Mapping[str, Sequence[float]] | None = None,
    total_latency_ms: Sequence[float] | None = None,
    grid: Sequence[FrameThumb] = (),
    worst: Sequence[FrameThumb] = (),
    track_strip: Sequence[FrameThumb] = (),
) -> dict[str, Path]:
    """Write ``report.json``, ``report.html``, ``plots/*.png`` and ``overview.png`` into ``out_dir``."""
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    sem = report.get("semantic")
    pan = report.get("panoptic")
    if sem and class_table is not None:
        pngs["class_iou"] = plot_class_iou(sem, class_table.names, class_table.colors)
    if pan:
        pngs["pq"] = plot_pq(pan)
    if total_latency_ms is not None and len(total_latency_ms):
        pngs["latency_hist"] = plot_latency_hist(total_latency_ms)
        pngs["latency_timeline"] = plot_latency_timeline(latency_series or {}, total_latency_ms)
    if grid:
        pngs["grid"] = compose_thumbs(grid, "Frames spread over the bag")
    if worst:
        pngs["worst"] = compose_thumbs(worst, "Lowest frame mIoU")
    if track_strip:
        pngs["track_strip"] = compose_thumbs(track_strip, "Frames coloured by track (same colour = same track id)")
    paths: dict[str, Path] = {}
    for key, data in pngs.items():
        p = out / "plots" / f"{key}.png"
        p.write_bytes(data)
        paths[key] = p
    overview = plot_overview(report, pngs)
    (out / "overview.png").write_bytes(overview)
    paths["overview"] = out / "overview.png"
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=2), encoding="utf-8")
    paths["json"] = out / "report.json"
    (out / "report.html").write_text(render_html(report, pngs), encoding="utf-8")
    paths["html"] = out / "report.html"
    return paths

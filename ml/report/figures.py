"""Report figures: error distributions, speed profiles, case studies over the map, robustness."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ml.cities import ROAD_CLASSES, RoadNetwork

METHOD_COLOURS = {
    "mar": "#7f8c8d", "industrial_hmm": "#2980b9", "video_sft": "#e67e22", "video_gdpo": "#c0392b",
    "wcl": "#95a5a6", "hmm_wcl": "#16a085", "msr": "#8e44ad", "hre": "#27ae60", "hrea": "#d35400",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_cdf(per_sample: pd.DataFrame, track: str, path: Path) -> Path:
    """Empirical CDF of the pooled point errors of each method of one track."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=90)
    for method, g in per_sample[per_sample["track"] == track].groupby("method", sort=False):
        e = np.concatenate([np.asarray(x, dtype=float) for x in g["errors_m"]]) if len(g) else np.zeros(0)
        e = np.sort(e[np.isfinite(e)])
        if len(e):
            ax.plot(e, np.arange(1, len(e) + 1) / len(e), label=method, color=METHOD_COLOURS.get(method))
    ax.set_xscale("log")
    ax.set_xlabel("point error (m, log scale)")
    ax.set_ylabel("share of points")
    ax.set_title(f"{track} track: error distribution")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _speeds(t: np.ndarray, xy: np.ndarray) -> np.ndarray:
    d = np.hypot(*np.diff(xy, axis=0).T)
    return d / np.maximum(np.diff(t), 1e-9)


def speed_profiles(contexts: Sequence, predictions: Mapping[str, Mapping[str, np.ndarray]], path: Path,
                   n: int = 3) -> Path:
    """Speed over time of the truth and of each method for a few samples."""
    plt = _plt()
    ctxs = list(contexts)[:n]
    fig, axes = plt.subplots(len(ctxs), 1, figsize=(6, 2.2 * max(len(ctxs), 1)), dpi=90, squeeze=False)
    for ax, ctx in zip(axes[:, 0], ctxs):
        tm = (ctx.eval_t[:-1] + ctx.eval_t[1:]) / 2 / 60.0
        ax.plot(tm, _speeds(ctx.eval_t, ctx.truth_xy) * 3.6, color="black", lw=2, label="truth")
        for method, preds in predictions.items():
            xy = preds.get(ctx.sample_id)
            if xy is not None and np.isfinite(xy).all():
                ax.plot(tm, _speeds(ctx.eval_t, xy) * 3.6, lw=1, label=method, color=METHOD_COLOURS.get(method))
        ax.set_ylabel("km/h")
        ax.set_title(f"sample {ctx.sample_id}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("minutes since window start")
    axes[0, 0].legend(fontsize=6, ncol=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw_roads(ax, net: RoadNetwork, box: tuple[float, float, float, float]) -> None:
    from matplotlib.collections import LineCollection

    s = net.segments
    xmin, ymin, xmax, ymax = box
    m = ((np.minimum(s["a"][:, 0], s["b"][:, 0]) <= xmax) & (np.maximum(s["a"][:, 0], s["b"][:, 0]) >= xmin)
         & (np.minimum(s["a"][:, 1], s["b"][:, 1]) <= ymax) & (np.maximum(s["a"][:, 1], s["b"][:, 1]) >= ymin))
    major = net.edge_class[s["edge"]] <= ROAD_CLASSES.index("secondary")
    for sel, w, c in ((m & ~major, 0.6, "#cccccc"), (m & major, 1.4, "#aaaaaa")):
        ax.add_collection(LineCollection(np.stack([s["a"][sel], s["b"][sel]], axis=1), colors=c, linewidths=w))


def case_study(ctx, predictions: Mapping[str, np.ndarray], path: Path, title: str = "") -> Path:
    """One sample over the map: roads, serving towers in time order, the truth and each method."""
    plt = _plt()
    pts = [ctx.truth_xy, ctx.record_xy] + [p for p in predictions.values() if p is not None]
    allxy = np.vstack([p[np.isfinite(p).all(axis=1)] for p in pts if len(p)])
    lo, hi = allxy.min(axis=0) - 150, allxy.max(axis=0) + 150
    side = float(max(hi - lo))
    c = (lo + hi) / 2
    box = (c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=90)
    _draw_roads(ax, ctx.net, box)
    rec = ctx.record_xy
    ax.plot(rec[:, 0], rec[:, 1], "--", color="#9b59b6", lw=0.8, alpha=0.7)
    ax.scatter(rec[:, 0], rec[:, 1], c=ctx.record_t, cmap="viridis", s=25, marker="^", zorder=3, label="serving towers")
    ax.plot(ctx.truth_xy[:, 0], ctx.truth_xy[:, 1], color="black", lw=2.5, label="truth", zorder=4)
    for method, xy in predictions.items():
        if xy is not None and np.isfinite(xy).any():
            ax.plot(xy[:, 0], xy[:, 1], lw=1.3, label=method, color=METHOD_COLOURS.get(method), zorder=5)
    ax.set_xlim(box[0], box[2])
    ax.set_ylim(box[1], box[3])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, loc="upper left")
    ax.set_title(title or f"sample {ctx.sample_id}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def robustness_figure(df: pd.DataFrame, path: Path) -> Path:
    """RMSE and TME against the share of dropped MR records (mean over seeds, one line per method)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for ax, metric, label in ((axes[0], "rmse_m", "RMSE / QLE (m)"), (axes[1], "tme_pct", "TME (%)")):
        if metric not in df.columns:
            continue
        g = df.groupby(["method", "drop_frac"], sort=False)[metric].mean().reset_index()
        for method, gm in g.groupby("method", sort=False):
            ax.plot(gm["drop_frac"] * 100, gm[metric], marker="o", ms=3, label=method, color=METHOD_COLOURS.get(method))
        ax.set_xlabel("MR records dropped (%)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Robustness to missing measurement reports", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

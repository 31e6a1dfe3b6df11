"""A map of a few cells' footprints over the roads (asset metadata, docs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml.cities.network import RoadNetwork
from ml.observation.context import TowerTable
from ml.observation.handmade import coverage_centres


def plot_footprints(fp: pd.DataFrame, net: RoadNetwork, towers: TowerTable, path: Path, n_cells: int = 6,
                    title: str = "") -> Path:
    """PNG: the ``n_cells`` cells with the most history (plain cells, not handover pairs), each road point
    a dot sized by its weight, the cell's learned mean (x) and hand-made coverage centre (+)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    cells = fp[fp["kind"] == "cell"]
    top = cells.groupby("cell_id")["n_records"].first().sort_values(ascending=False).index[:n_cells]
    s = net.segments
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=90)
    ax.add_collection(LineCollection(np.stack([s["a"], s["b"]], axis=1) / 1000.0, colors="#c8c8c8", linewidths=0.5))
    colours = plt.get_cmap("tab10")
    for i, cell in enumerate(top):
        g = cells[cells["cell_id"] == cell]
        c = colours(i % 10)
        ax.scatter(g["point_x"] / 1000.0, g["point_y"] / 1000.0, s=4 + 400 * g["weight"], color=c, alpha=0.5,
                   edgecolors="none", label=f"cell {cell} ({int(g['n_records'].iloc[0])} records)")
        ax.plot(g["mean_x"].iloc[0] / 1000.0, g["mean_y"].iloc[0] / 1000.0, "x", color=c, ms=9, mew=2)
        cc = coverage_centres(np.array([cell]), towers)[0] / 1000.0
        ax.plot(cc[0], cc[1], "+", color=c, ms=11, mew=2)
    xmin, ymin, xmax, ymax = (v / 1000.0 for v in net.bounds)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_xlabel(f"x (km, {net.crs})")
    ax.set_ylabel("y (km)")
    ax.set_title(title or "cell footprints: road points by weight; x learned mean, + coverage centre", fontsize=8)
    ax.legend(loc="upper right", fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

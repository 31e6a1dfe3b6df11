"""A small map image of a road network, coloured by road class (for people and asset metadata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.cities.network import ROAD_CLASSES, RoadNetwork

_CLASS_STYLE = {  # (colour, width) most important first
    "motorway": ("#c0392b", 2.2), "trunk": ("#d35400", 2.0), "primary": ("#e67e22", 1.6),
    "secondary": ("#f1c40f", 1.3), "tertiary": ("#7f8c8d", 1.0), "residential": ("#95a5a6", 0.6),
    "other": ("#bdc3c7", 0.5),
}


def plot_road_network(net: RoadNetwork, path: Path, title: str = "", size_in: float = 5.0, dpi: int = 80) -> Path:
    """Write a PNG map of the network (one line collection per class); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    s = net.segments
    fig, ax = plt.subplots(figsize=(size_in, size_in), dpi=dpi)
    for c in reversed(range(len(ROAD_CLASSES))):
        m = net.edge_class[s["edge"]] == c
        if not m.any():
            continue
        colour, width = _CLASS_STYLE[ROAD_CLASSES[c]]
        segs = np.stack([s["a"][m], s["b"][m]], axis=1) / 1000.0
        ax.add_collection(LineCollection(segs, colors=colour, linewidths=width, label=ROAD_CLASSES[c]))
    xmin, ymin, xmax, ymax = (v / 1000.0 for v in net.bounds)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_xlabel(f"x (km, {net.crs})")
    ax.set_ylabel("y (km)")
    ax.legend(loc="upper right", fontsize=6)
    ax.set_title(title, fontsize=9)
    ax.text(0.01, 0.01, "(c) OpenStreetMap contributors" if "synthetic" not in title else "synthetic",
            transform=ax.transAxes, fontsize=6, color="#555")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

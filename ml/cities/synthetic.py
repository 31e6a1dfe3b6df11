"""Synthetic road networks (grid, radial-ring, organic) written as OSM XML.

The generator only writes OSM XML; the network is then built by the same loader as a real
extract, so the offline default exercises the real path. Road classes and speed limits follow
a simple hierarchy: arterials (primary/secondary), collectors (tertiary), local streets
(residential), some one-way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.spatial import Delaunay

SPEED_KPH = {"primary": 60, "secondary": 50, "tertiary": 40, "residential": 30}


@dataclass
class _Builder:
    xy: list[tuple[float, float]] = field(default_factory=list)
    ways: list[tuple[list[int], str, bool]] = field(default_factory=list)  # (node indices, highway, oneway)

    def node(self, x: float, y: float) -> int:
        self.xy.append((float(x), float(y)))
        return len(self.xy) - 1

    def way(self, nodes: list[int], highway: str, oneway: bool = False) -> None:
        if len(nodes) >= 2:
            self.ways.append((nodes, highway, oneway))


def _grid(b: _Builder, size_m: float, rng: np.random.Generator) -> None:
    spacing = 150.0
    n = max(3, int(size_m // spacing) + 1)
    theta = rng.uniform(-0.3, 0.3)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    ids = np.empty((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            p = (np.array([i, j]) - (n - 1) / 2.0) * spacing + rng.normal(0, 8.0, 2)
            ids[i, j] = b.node(*(rot @ p))

    def cls(k: int) -> str:
        return "primary" if k % 6 == 3 else "secondary" if k % 6 == 0 else "tertiary" if k % 3 == 0 else "residential"

    for axis in (0, 1):
        for k in range(n):
            line = ids[k, :] if axis == 0 else ids[:, k]
            hw = cls(k)
            oneway = hw == "residential" and k % 4 in (1, 2)
            seq = list(line if (k % 4 != 2) else line[::-1])
            # break local streets in places (parks, dead ends) like real grids
            start = 0
            for s in range(1, len(seq)):
                if hw == "residential" and rng.random() < 0.06:
                    b.way(seq[start:s], hw, oneway)
                    start = s
            b.way(seq[start:], hw, oneway)


def _radial(b: _Builder, size_m: float, rng: np.random.Generator) -> None:
    radii = np.arange(220.0, size_m / 2.0, 330.0)
    n_spokes = 16
    angles = np.linspace(0, 2 * np.pi, n_spokes, endpoint=False) + rng.uniform(0, 0.2)
    centre = b.node(0.0, 0.0)
    ring_nodes: list[list[int]] = []
    for ri, r in enumerate(radii):
        # spoke intersections plus intermediate arc vertices so rings are curved
        per = 4
        nodes = []
        for si in range(n_spokes * per):
            a = angles[0] + 2 * np.pi * si / (n_spokes * per)
            rr = r * (1 + rng.normal(0, 0.015))
            nodes.append(b.node(rr * np.cos(a), rr * np.sin(a)))
        ring_nodes.append(nodes)
        hw = "secondary" if ri % 3 == 1 else "tertiary" if ri % 3 == 2 else "residential"
        b.way(nodes + [nodes[0]], hw)
    for si in range(n_spokes):
        hw = "primary" if si % 4 == 0 else "secondary" if si % 4 == 2 else "residential"
        seq = [centre] + [ring_nodes[ri][si * 4] for ri in range(len(radii))]
        if hw == "residential":
            seq = seq[1:]  # local spokes do not all meet in the centre
        b.way(seq, hw)
    # local streets between rings, half-way between spokes
    for ri in range(len(radii) - 1):
        for si in range(n_spokes):
            if rng.random() < 0.75:
                k = si * 4 + 2
                b.way([ring_nodes[ri][k], ring_nodes[ri + 1][k]], "residential")


def _organic(b: _Builder, size_m: float, rng: np.random.Generator) -> None:
    spacing = 170.0
    n = max(4, int(size_m // spacing) + 1)
    g = (np.stack(np.meshgrid(np.arange(n), np.arange(n)), -1).reshape(-1, 2) - (n - 1) / 2.0) * spacing
    pts = g + rng.uniform(-0.35, 0.35, g.shape) * spacing
    tri = Delaunay(pts)
    edges = set()
    for s in tri.simplices:
        for a, c in ((s[0], s[1]), (s[1], s[2]), (s[2], s[0])):
            edges.add((min(a, c), max(a, c)))
    edges = sorted(edges)
    lengths = np.array([np.hypot(*(pts[a] - pts[c])) for a, c in edges])
    keep = (lengths < 1.55 * spacing) & (rng.random(len(edges)) > 0.22)
    ids = [b.node(*p) for p in pts]
    # arterials: a few meandering straight-ish lines across the city
    art = set()
    for k in range(3):
        ang = rng.uniform(0, np.pi)
        d = np.array([np.cos(ang), np.sin(ang)])
        offset = rng.uniform(-0.25, 0.25) * size_m
        normal = np.array([-d[1], d[0]])
        for (a, c), L in zip(edges, lengths):
            mid = (pts[a] + pts[c]) / 2
            along = abs(np.dot(pts[c] - pts[a], d)) / max(L, 1)
            if abs(np.dot(mid, normal) - offset) < spacing * 0.6 and along > 0.6:
                art.add((a, c))
    for (a, c), L, k in zip(edges, lengths, keep):
        is_art = (a, c) in art
        if not (k or is_art):
            continue
        hw = "secondary" if is_art else "residential"
        # bend local streets with a displaced mid vertex
        mid = (pts[a] + pts[c]) / 2 + rng.normal(0, 0.08 * L, 2) * (0.3 if is_art else 1.0)
        b.way([ids[a], b.node(*mid), ids[c]], hw)


def write_synthetic_osm(
    path: Path | str,
    kind: Literal["grid", "radial", "organic"],
    size_km: float = 4.0,
    center_lon: float = 11.0,
    center_lat: float = 48.0,
    seed: int = 0,
) -> dict[str, int]:
    """Generate a synthetic city and write it as OSM XML; returns node and way counts."""
    rng = np.random.default_rng(seed)
    b = _Builder()
    {"grid": _grid, "radial": _radial, "organic": _organic}[kind](b, size_km * 1000.0, rng)
    xy = np.asarray(b.xy)
    m_per_deg_lat = 111_320.0
    m_per_deg_lon = m_per_deg_lat * np.cos(np.radians(center_lat))
    lon = center_lon + xy[:, 0] / m_per_deg_lon
    lat = center_lat + xy[:, 1] / m_per_deg_lat
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="sig2gps-synthetic">\n')
        for i, (lo, la) in enumerate(zip(lon, lat)):
            f.write(f'<node id="{i + 1}" lat="{la:.7f}" lon="{lo:.7f}"/>\n')
        for w, (nodes, hw, oneway) in enumerate(b.ways):
            f.write(f'<way id="{w + 1}">' + "".join(f'<nd ref="{n + 1}"/>' for n in nodes))
            f.write(f'<tag k="highway" v="{hw}"/><tag k="maxspeed" v="{SPEED_KPH[hw]}"/>')
            if oneway:
                f.write('<tag k="oneway" v="yes"/>')
            f.write("</way>\n")
        f.write("</osm>\n")
    return {"nodes": len(xy), "ways": len(b.ways)}

"""Pure-Python reference of the HMM map matcher (plain loops + networkx shortest paths).

Not for production use: it exists to check :func:`ml.mapmatch.match_trajectory` in tests and as
the baseline of ``bench/industrial_hmm.py``. It implements the same model (candidates, Gaussian
emission, exponential transition on |route - straight line|, speed pruning, same-edge moves,
breaks handled by restarting, shortest-path route) without numpy vectorisation or scipy.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from ml.cities.network import RoadNetwork
from ml.mapmatch.hmm import MatchResult


def _edge_polylines(net: RoadNetwork) -> list[list[tuple[float, float]]]:
    return [[(float(x), float(y)) for x, y in net.edge_geometry(e)] for e in range(net.n_edges)]


def _candidates_py(polys, lengths, x, y, radius, k):
    """Nearest position on every edge within ``radius`` (loop over all segments), best ``k``."""
    out = []
    for e, poly in enumerate(polys):
        geo_len = sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(poly[:-1], poly[1:]))
        scale = lengths[e] / geo_len if geo_len > 0 else 1.0
        best = None
        acc = 0.0
        for a, b in zip(poly[:-1], poly[1:]):
            dx, dy = b[0] - a[0], b[1] - a[1]
            L2 = max(dx * dx + dy * dy, 1e-12)
            tt = min(1.0, max(0.0, ((x - a[0]) * dx + (y - a[1]) * dy) / L2))
            px, py = a[0] + tt * dx, a[1] + tt * dy
            d = math.hypot(x - px, y - py)
            if d <= radius and (best is None or d < best[0]):
                best = (d, e, (acc + tt * math.sqrt(dx * dx + dy * dy)) * scale, (px, py))
            acc += math.hypot(dx, dy)
        if best is not None:
            out.append(best)
    out.sort(key=lambda c: c[0])
    return out[:k]


def _sub(poly, edge_len, o1, o2):
    """Sub-polyline of ``poly`` between offsets o1 <= o2 (edge-length units)."""
    cum = [0.0]
    for a, b in zip(poly[:-1], poly[1:]):
        cum.append(cum[-1] + math.hypot(b[0] - a[0], b[1] - a[1]))
    scale = cum[-1] / edge_len if edge_len > 0 else 0.0
    s1 = min(max(o1 * scale, 0.0), cum[-1])
    s2 = min(max(o2 * scale, s1), cum[-1])

    def at(s):
        for i in range(len(poly) - 1):
            if cum[i + 1] >= s or i == len(poly) - 2:
                seg = cum[i + 1] - cum[i]
                f = (s - cum[i]) / seg if seg > 0 else 0.0
                return (poly[i][0] + f * (poly[i + 1][0] - poly[i][0]), poly[i][1] + f * (poly[i + 1][1] - poly[i][1]))
        return poly[0]

    return [at(s1)] + [p for p, c in zip(poly, cum) if s1 < c < s2] + [at(s2)]


def match_trajectory_reference(
    net: RoadNetwork,
    xy: np.ndarray,
    t: np.ndarray,
    sigma_m: float,
    beta_m: float = 50.0,
    max_speed_mps: float | None = None,
    radius_m: float | None = None,
    max_candidates: int = 8,
    G: nx.DiGraph | None = None,
) -> MatchResult:
    """Loop-and-networkx version of :func:`ml.mapmatch.match_trajectory` (same defaults)."""
    radius = radius_m if radius_m is not None else max(3.0 * sigma_m, 25.0)
    slack, back_tol, route_factor = 2.0 * sigma_m, float(sigma_m), 3.0
    if G is None:
        G = nx.DiGraph()
        for e in range(net.n_edges):
            u, v, L = int(net.edge_u[e]), int(net.edge_v[e]), float(net.edge_length_m[e])
            if not G.has_edge(u, v) or G[u][v]["length"] > L:
                G.add_edge(u, v, length=L)
    polys = _edge_polylines(net)
    lengths = [float(v) for v in net.edge_length_m]
    eu = [int(v) for v in net.edge_u]
    ev = [int(v) for v in net.edge_v]
    pts = [(float(a), float(b)) for a, b in np.asarray(xy, dtype=float).reshape(-1, 2)]
    ts = [float(v) for v in np.asarray(t, dtype=float)]
    n = len(pts)
    cands, idx = [], []
    for i, (x, y) in enumerate(pts):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        c = _candidates_py(polys, lengths, x, y, radius, max_candidates)
        if c:
            cands.append(c)
            idx.append(i)
    if not cands:
        from ml.mapmatch.hmm import _empty_result

        return _empty_result(n)
    score = [-0.5 * (c[0] / sigma_m) ** 2 for c in cands[0]]
    backs: list[list[int]] = [[]]
    paths: list[dict] = [{}]
    seg_end: dict[int, list[float]] = {}
    n_breaks = 0
    for k in range(1, len(cands)):
        pa, pb = pts[idx[k - 1]], pts[idx[k]]
        g = math.hypot(pb[0] - pa[0], pb[1] - pa[1])
        dt = max(ts[idx[k]] - ts[idx[k - 1]], 0.0)
        limit = max_speed_mps * dt + slack if max_speed_mps is not None else route_factor * g + 2 * radius + 50.0
        new, back, kpaths = [], [], {}
        sp_cache = {}
        for j, (dj, ebj, obj, _) in enumerate(cands[k]):
            best, arg = -math.inf, -1
            for i, (di, eai, oai, _) in enumerate(cands[k - 1]):
                if eai == ebj and obj >= oai - back_tol:
                    r = max(obj - oai, 0.0)
                    path = None
                else:
                    src = ev[eai]
                    if src not in sp_cache:
                        sp_cache[src] = nx.single_source_dijkstra(G, src, cutoff=limit, weight="length")
                    dist, pth = sp_cache[src]
                    if eu[ebj] not in dist:
                        continue
                    r = lengths[eai] - oai + dist[eu[ebj]] + obj
                    path = pth[eu[ebj]]
                if max_speed_mps is not None and r > max_speed_mps * dt + slack:
                    continue
                if max_speed_mps is None and r > limit + lengths[eai]:
                    continue
                s = score[i] - abs(r - g) / beta_m
                if s > best:
                    best, arg = s, i
                    kpaths[j] = path
            new.append(best - 0.5 * (dj / sigma_m) ** 2 if arg >= 0 else -math.inf)
            back.append(arg)
        if all(v == -math.inf for v in new):
            n_breaks += 1
            seg_end[k - 1] = score
            new = [-0.5 * (c[0] / sigma_m) ** 2 for c in cands[k]]
            back = [-1] * len(cands[k])
        m = max(v for v in new if v > -math.inf)
        score = [v - m for v in new]
        backs.append(back)
        paths.append(kpaths)
    choice = [0] * len(cands)
    j = max(range(len(score)), key=lambda q: score[q])
    for k in range(len(cands) - 1, -1, -1):
        choice[k] = j
        if k == 0:
            break
        j = backs[k][j] if backs[k][j] >= 0 else max(range(len(seg_end[k - 1])), key=lambda q: seg_end[k - 1][q])
    # route
    route = [cands[0][choice[0]][3]]
    ridx = [0]
    cur_o = cands[0][choice[0]][2]
    for k in range(1, len(cands)):
        _, ea, oa, _ = cands[k - 1][choice[k - 1]]
        _, eb, ob, _ = cands[k][choice[k]]
        if ea == eb and ob >= oa - back_tol:
            piece = _sub(polys[eb], lengths[eb], cur_o, ob)[1:] if ob > cur_o else []
            cur_o = max(cur_o, ob)
        else:
            nodes = paths[k].get(choice[k]) if backs[k][choice[k]] >= 0 else None
            if nodes is None:
                nodes = nx.shortest_path(G, ev[ea], eu[eb], weight="length")
            mid = []
            for a, b in zip(nodes[:-1], nodes[1:]):
                e = net.edge_lookup[(a, b)]
                mid.extend(polys[e] if not mid else polys[e][1:])
            if not mid:
                mid = [tuple(net.node_xy[nodes[0]])]
            piece = (_sub(polys[ea], lengths[ea], cur_o, lengths[ea]) + mid + _sub(polys[eb], lengths[eb], 0.0, ob))[1:]
            cur_o = ob
        route.extend(piece)
        ridx.append(len(route) - 1)
    route_xy = np.array(route, dtype=float)
    cum = [0.0]
    for a, b in zip(route[:-1], route[1:]):
        cum.append(cum[-1] + math.hypot(b[0] - a[0], b[1] - a[1]))
    out = _empty_result_like(n)
    for k, i in enumerate(idx):
        d, e, o, p = cands[k][choice[k]]
        out.point_edge[i] = e
        out.point_offset_m[i] = o
        out.point_xy[i] = p
        out.point_route_m[i] = cum[ridx[k]]
    out.route_xy = route_xy
    out.route_cum_m = np.array(cum)
    out.n_breaks = n_breaks
    out.n_unmatched = n - len(idx)
    return out


def _empty_result_like(n: int) -> MatchResult:
    from ml.mapmatch.hmm import _empty_result

    return _empty_result(n)

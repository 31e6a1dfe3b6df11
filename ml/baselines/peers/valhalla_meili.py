"""``valhalla_meili``: Valhalla's map matcher (Meili) through ``pyvalhalla``, tiles built locally.

Roads: an OSM PBF is written with pyosmium from the city's ``RoadNetwork`` (each directed edge a
one-way way with its geometry, road class and speed), so Valhalla routes on the same drivable,
strongly connected roads as every other method, whatever the city's source (synthetic XML, an
``.osm.gz`` extract or a PBF); ``valhalla_build_tiles`` turns it into routing tiles once per
network (the setup time).

Interpreter: ``pyvalhalla`` publishes wheels for Python 3.12+ only and this project runs 3.11.
When ``valhalla`` imports here it runs in-process; otherwise, when ``SIG2GPS_VALHALLA_PYTHON``
names a Python 3.12+ interpreter that has ``pyvalhalla`` (``make peers-valhalla`` makes one in
``.venv/valhalla312``), :mod:`ml.baselines.peers.valhalla_worker` runs under it and answers over a
pipe. With neither, the method is skipped with a message saying so; no other engine stands in.

Meili parameters and service limits take effect from the configuration only (not per request),
so each setting gets its own ``Actor``; the trace service limits (``max_search_radius`` and
``max_gps_accuracy``, 100 m by default) are raised to the cell-sized radius. ``ms`` per window is
what the ``trace_attributes`` call takes where Valhalla runs, plus building the request and
reading the answer here (the pipe transfer in between is not counted).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ml.observation.context import SampleContext
from ml.baselines.peers.common import (
    EngineCache, PeerRoute, PeerUnavailable, network_fingerprint, positions_from_route, route_from_pieces,
    window_observations,
)
from ml.cities.network import ROAD_CLASSES, RoadNetwork

WORKER = Path(__file__).with_name("valhalla_worker.py")
ENV_PYTHON = "SIG2GPS_VALHALLA_PYTHON"
_HIGHWAY = {"other": "unclassified"}  # RoadNetwork class -> OSM highway value
_NO_EDGE = 4294967295  # Valhalla's edge_index of an unmatched point


def _in_process() -> bool:
    try:
        import valhalla  # noqa: F401
    except ImportError:  # needed: pyvalhalla has no 3.11 wheel; the same engine then runs in SIG2GPS_VALHALLA_PYTHON
        return False
    return True


def available() -> str | None:
    """None when Valhalla can run (in-process or through ``SIG2GPS_VALHALLA_PYTHON``), else the reason."""
    if _in_process():
        return None
    py = os.environ.get(ENV_PYTHON)
    if py:
        if not Path(py).is_file():
            return f"valhalla_meili skipped: {ENV_PYTHON}={py} is not a file"
        return None
    return (f"valhalla_meili skipped: pyvalhalla publishes wheels for Python >= 3.12 only and this is Python "
            f"{platform.python_version()}; run `make peers-valhalla` (a Python 3.12 environment with pyvalhalla in "
            f".venv/valhalla312) and set {ENV_PYTHON}=.venv/valhalla312/bin/python")


@dataclass(frozen=True)
class MeiliParams:
    """Meili settings for cell-level noise, relative to the industrial HMM's sigma.

    ``sigma_z`` (emission standard deviation) = ``sigma_z_factor`` x sigma and ``gps_accuracy``
    = sigma; ``beta`` (scale of the exponential on |route - straight line|) = ``beta_factor`` x
    sigma; candidates within ``radius_factor`` x sigma (the industrial HMM's 2.5);
    ``breakage_distance``: consecutive points farther apart than this start a new match (the
    2 km default is shorter than some gaps between cell observations).
    The defaults are the setting ``bench/peers.py`` chose on gridville's val windows.
    """

    sigma_z_factor: float = 1.0
    beta_factor: float = 1.0
    radius_factor: float = 2.5
    breakage_distance_m: float = 10000.0

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not v > 0:
                raise ValueError(f"MeiliParams.{k} must be > 0 (got {v})")

    def config(self, sigma_m: float) -> tuple[dict, dict]:
        """``(meili.default overrides, service_limits.trace overrides)`` for this sigma."""
        radius = self.radius_factor * sigma_m
        meili = {"sigma_z": self.sigma_z_factor * sigma_m, "beta": self.beta_factor * sigma_m,
                 "search_radius": radius, "max_search_radius": radius, "gps_accuracy": sigma_m,
                 "breakage_distance": self.breakage_distance_m}
        limits = {"max_search_radius": radius, "max_gps_accuracy": max(sigma_m, 100.0)}
        return meili, limits


def write_network_pbf(net: RoadNetwork, path: str | Path) -> dict[str, int]:
    """Write ``net`` as an OSM PBF (pyosmium): graph nodes keep ids ``1..N``, interior geometry
    vertices get their own ids, every directed edge is a one-way way with its class and speed."""
    import osmium

    path = Path(path)
    if path.exists():
        path.unlink()
    ll = net.projection.to_lonlat(net.geom_xy)
    node_ll = net.projection.to_lonlat(net.node_xy)
    n = net.n_nodes
    writer = osmium.SimpleWriter(str(path))
    try:
        for i, (lon, lat) in enumerate(node_ll.tolist()):
            writer.add_node(osmium.osm.mutable.Node(id=i + 1, location=(lon, lat)))
        offs = net.geom_offsets
        for e in range(net.n_edges):
            g0, g1 = int(offs[e]), int(offs[e + 1])
            for v in range(g0 + 1, g1 - 1):
                writer.add_node(osmium.osm.mutable.Node(id=n + 1 + v, location=(float(ll[v, 0]), float(ll[v, 1]))))
        for e in range(net.n_edges):
            g0, g1 = int(offs[e]), int(offs[e + 1])
            refs = [int(net.edge_u[e]) + 1] + [n + 1 + v for v in range(g0 + 1, g1 - 1)] + [int(net.edge_v[e]) + 1]
            cls = ROAD_CLASSES[int(net.edge_class[e])]
            tags = {"highway": _HIGHWAY.get(cls, cls), "oneway": "yes",
                    "maxspeed": str(int(round(float(net.edge_speed_mps[e]) * 3.6)))}
            writer.add_way(osmium.osm.mutable.Way(id=e + 1, nodes=refs, tags=tags))
    finally:
        writer.close()
    return {"nodes": n + int(max(len(net.geom_xy) - 2 * net.n_edges, 0)), "ways": net.n_edges}


def decode_polyline6(s: str) -> np.ndarray:
    """Decode a Google encoded polyline with precision 6 (Valhalla's shape) into ``(m, 2)`` lon, lat."""
    coords, idx, lat, lon = [], 0, 0, 0
    n = len(s)
    while idx < n:
        vals = []
        for _ in range(2):
            shift = result = 0
            while True:
                b = ord(s[idx]) - 63
                idx += 1
                result |= (b & 0x1F) << shift
                shift += 5
                if b < 0x20:
                    break
            vals.append(~(result >> 1) if result & 1 else result >> 1)
        lat += vals[0]
        lon += vals[1]
        coords.append((lon / 1e6, lat / 1e6))
    return np.asarray(coords, dtype=np.float64).reshape(-1, 2)


class _Worker:
    """A :mod:`valhalla_worker` process (or the same core in-process) and its requests."""

    def __init__(self) -> None:
        if _in_process():
            from ml.baselines.peers.valhalla_worker import MeiliCore

            self.core, self.proc = MeiliCore(), None
            self.python = sys.executable
        else:
            py = os.environ.get(ENV_PYTHON)
            if not py:
                raise PeerUnavailable(available() or "valhalla_meili unavailable")
            self.core, self.python = None, py
            self.proc = subprocess.Popen([py, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, bufsize=1)
        ans = self.ask({"op": "version"})
        if not ans.get("ok"):
            self.close()
            raise PeerUnavailable(f"valhalla_meili skipped: the Valhalla worker under {self.python} failed: "
                                  f"{ans.get('error')}")
        self.version = ans["version"]
        self.worker_python = ans["python"]

    def ask(self, msg: dict) -> dict:
        if self.core is not None:
            return self.core.handle(msg)
        if self.proc is None or self.proc.poll() is not None:
            return {"ok": False, "error": f"Valhalla worker under {self.python} is not running"}
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"ok": False, "error": f"Valhalla worker under {self.python} exited"}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class ValhallaEngine:
    """Routing tiles of one road network and an Actor per Meili setting."""

    def __init__(self, net: RoadNetwork, cache_dir: str | Path | None = None) -> None:
        reason = available()
        if reason:
            raise PeerUnavailable(reason)
        self.net = net
        root = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "sig2gps-peers"
        self.dir = root / "valhalla" / network_fingerprint(net)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tile_dir = self.dir / "tiles"
        self.worker = _Worker()
        self.version = self.worker.version
        t0 = time.perf_counter()
        self.pbf_s = self.build_s = 0.0
        if not any(self.tile_dir.rglob("*.gph")):
            pbf = self.dir / "roads.osm.pbf"
            write_network_pbf(net, pbf)
            self.pbf_s = time.perf_counter() - t0
            ans = self.worker.ask({"op": "build", "pbf": str(pbf), "tile_dir": str(self.tile_dir)})
            if not ans.get("ok"):
                raise RuntimeError(f"valhalla_meili: building tiles failed: {ans.get('error')}")
            self.build_s = float(ans["build_s"])
        self._setting: tuple | None = None
        self.last_ms = self.last_roundtrip_ms = float("nan")  # Valhalla's own time / the round trip, last call

    def _actor(self, sigma_m: float, params: MeiliParams) -> None:
        key = (round(sigma_m, 6), params)
        if key == self._setting:
            return
        meili, limits = params.config(sigma_m)
        ans = self.worker.ask({"op": "actor", "tile_dir": str(self.tile_dir), "meili": meili, "trace_limits": limits})
        if not ans.get("ok"):
            raise RuntimeError(f"valhalla_meili: creating the Actor failed: {ans.get('error')}")
        self._setting = key

    def match(self, obs_xy: np.ndarray, obs_t: np.ndarray, sigma_m: float,
              params: MeiliParams) -> tuple[PeerRoute, float]:
        """Match observations into a :class:`PeerRoute`; also returns Valhalla's own ms for the call.

        Raises ``RuntimeError`` with Valhalla's message when it finds no match for the window.
        """
        self._actor(sigma_m, params)
        ll = self.net.projection.to_lonlat(np.asarray(obs_xy, dtype=np.float64).reshape(-1, 2))
        shape = [{"lat": float(la), "lon": float(lo), "time": float(t)} for (lo, la), t in zip(ll.tolist(), obs_t)]
        req = {"shape": shape, "costing": "auto", "shape_match": "map_snap",
               "filters": {"attributes": ["shape", "matched.point", "matched.type", "matched.edge_index",
                                          "edge.begin_shape_index", "edge.end_shape_index"], "action": "include"}}
        t0 = time.perf_counter()
        ans = self.worker.ask({"op": "trace", "request": req})
        self.last_roundtrip_ms = (time.perf_counter() - t0) * 1e3
        self.last_ms = float(ans.get("ms", float("nan")))
        if not ans.get("ok"):
            raise RuntimeError(f"valhalla_meili: {ans.get('error')}")
        return self._route(ans["result"], len(obs_xy)), float(ans["ms"])

    def _route(self, res: dict, n_obs: int) -> PeerRoute:
        shape_ll = decode_polyline6(res.get("shape", ""))
        if len(shape_ll) == 0:
            return route_from_pieces([], n_obs)
        xy = self.net.projection.to_xy(shape_ll[:, 0], shape_ll[:, 1])
        edges = res.get("edges", [])
        at: dict[int, float] = {}
        last = 0.0
        for i, mp in enumerate(res.get("matched_points", [])[:n_obs]):
            ei = mp.get("edge_index", _NO_EDGE)
            if mp.get("type") == "unmatched" or ei is None or ei >= len(edges):
                continue
            b = int(edges[ei].get("begin_shape_index", 0))
            e = int(edges[ei].get("end_shape_index", len(xy) - 1))
            p = self.net.projection.to_xy(np.array([mp["lon"]]), np.array([mp["lat"]]))[0]
            pos = _project_on(xy, p, b, max(e, b + 1))
            last = max(last, pos)
            at[i] = last
        return route_from_pieces([(xy, at)] if at else [], n_obs)

    def close(self) -> None:
        """Stop the worker process."""
        self.worker.close()


def _project_on(line: np.ndarray, p: np.ndarray, b: int, e: int) -> float:
    """Position ``v + f`` of the point of ``line[b:e+1]`` nearest to ``p``."""
    e = min(e, len(line) - 1)
    if e <= b:
        return float(min(b, len(line) - 1))
    a, c = line[b:e], line[b + 1:e + 1]
    ab = c - a
    den = np.maximum((ab**2).sum(axis=1), 1e-12)
    t = np.clip(((p - a) * ab).sum(axis=1) / den, 0.0, 1.0)
    d = np.hypot(*(a + t[:, None] * ab - p).T)
    k = int(np.argmin(d))
    return float(b + k + t[k])


ENGINES = EngineCache()
DEFAULT_PARAMS = MeiliParams()


def engine_for(net: RoadNetwork, cache_dir: str | Path | None = None) -> ValhallaEngine:
    """The cached :class:`ValhallaEngine` of ``net`` (tiles built on first use)."""
    return ENGINES.get(net, lambda n: ValhallaEngine(n, cache_dir or os.environ.get("SIG2GPS_PEER_CACHE")))


def version() -> str | None:
    """pyvalhalla version where it runs (None when unavailable)."""
    if available():
        return None
    try:
        w = _Worker()
        v = w.version
        w.close()
        return v
    except Exception:  # noqa: BLE001 - reported as unknown
        return None


def valhalla_meili(ctx: SampleContext, params: MeiliParams | None = None) -> np.ndarray:
    """Valhalla Meili on the industrial pipeline's cell observations; positions at ``ctx.eval_t``.

    A window without records gives NaN; a window Valhalla cannot match raises (counted as failed).
    """
    params = params or DEFAULT_PARAMS
    if len(ctx.records) == 0:
        return np.full((ctx.n_eval, 2), np.nan)
    obs_t, obs_xy, sigma = window_observations(ctx)
    route, _ = engine_for(ctx.net).match(obs_xy, obs_t, sigma, params)
    return positions_from_route(ctx, route, obs_t, "valhalla_meili")

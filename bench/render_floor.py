"""Round-trip floor of the map-visual representation by resolution and frame count.

    .venv/bin/python bench/render_floor.py [--cities gridville ringtown] [--real aguascalientes krems]
                                           [--n 40] [--resolutions 32 64 128] [--frames 9 17]

For each city: windows of W = 600 s (the city's materialised samples when ``data/<city>/`` holds
samples, signaling, towers and sample_truth; otherwise synthetic drives with towers on a jittered
grid, see ``ml.render.synthetic``), rendered and decoded back (``ml.render.floor.round_trip_floor``).
Writes ``outputs/<city>/render/floor.json``: ``{"rows": [{"resolution", "frames", "snapped",
"median_error_m", "p90_error_m", "tme_pct", ...}], "oracle": [...], ...}``. Real extracts in
``../shared/cities`` are skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from ml.cities import CityConfig, RoadSource, load_city, load_road_network, project_root  # noqa: E402
from ml.paths import CityPaths  # noqa: E402
from ml.render import RenderConfig  # noqa: E402
from ml.render.floor import oracle_time_floor, round_trip_floor  # noqa: E402
from ml.render.synthetic import synthetic_windows  # noqa: E402

SHARED = Path(os.environ.get("SIG2GPS_SHARED_CITIES", Path(__file__).resolve().parents[2] / "shared" / "cities"))
REAL = {"aguascalientes": "aguascalientes.osm.bz2", "krems": "krems.osm.gz", "bayreuth": "bayreuth.osm.gz",
        "campo_grande": "campo_grande.osm.gz"}


def _windows(name: str, net, paths: CityPaths, n: int, cfg: RenderConfig, seed: int, duration_s: float | None):
    """Materialised samples when present (and no other duration is asked), else synthetic windows."""
    need = [paths.table("samples"), paths.table("signaling"), paths.table("towers"), paths.sample_truth]
    if duration_s is None and all(p.is_file() for p in need):
        from ml.render.dataset import prepare_samples

        samples = pd.read_parquet(need[0]).head(n)
        prepared = prepare_samples(net, samples, pd.read_parquet(need[1]), pd.read_parquet(need[2]),
                                   pd.read_parquet(need[3]), cfg)
        return prepared, "materialised samples"
    ws, _ = synthetic_windows(net, n, seed=seed, cfg=cfg, duration_s=duration_s or 600.0)
    return ws, "synthetic drives (ml.render.synthetic)"


def run_city(name: str, net, n: int, resolutions, frames, cfg: RenderConfig, root: Path,
             duration_s: float | None = None, tag: str = "") -> dict:
    paths = CityPaths(root, name)
    t = time.perf_counter()
    ws, source = _windows(name, net, paths, n, cfg, seed=7, duration_s=duration_s)
    rows = round_trip_floor(net, ws, resolutions, frames, cfg)
    out = {
        "city": name, "source": source, "n_samples": len(ws), "duration_s": float(ws[0].duration_s) if ws else None,
        "zoom_sizes_m": list(cfg.zoom_sizes_m), "margin_m": cfg.margin_m,
        "tile_sizes_used_m": sorted({float(w.tile.size_m) for w in ws}),
        "rows": rows, "oracle": [oracle_time_floor(ws, k) for k in frames], "elapsed_s": time.perf_counter() - t,
        "command": "python bench/render_floor.py " + " ".join(sys.argv[1:]),
    }
    p = paths.outputs / "render" / (f"floor_{tag}.json" if tag else "floor.json")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=2))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cities", nargs="*", default=["gridville", "ringtown"])
    ap.add_argument("--real", nargs="*", default=["aguascalientes", "krems"], help=f"among {sorted(REAL)}")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--resolutions", nargs="*", type=int, default=[32, 64, 128])
    ap.add_argument("--frames", nargs="*", type=int, default=[9, 17])
    ap.add_argument("--zoom-sizes", nargs="*", type=float, default=None)
    ap.add_argument("--duration", type=float, default=None, help="window W in s (synthetic drives; default 600)")
    ap.add_argument("--tag", default="", help="write floor_<tag>.json instead of floor.json (for variants)")
    args = ap.parse_args(argv)
    root = project_root()
    cfg = RenderConfig() if args.zoom_sizes is None else RenderConfig(zoom_sizes_m=tuple(args.zoom_sizes))
    results = []
    todo = [(c, lambda c=c: load_road_network(load_city(c), cache_dir=CityPaths(root, c).roads_dir)) for c in args.cities]
    for r in args.real:
        f = SHARED / REAL[r]
        if not f.is_file():
            print(f"skip {r}: {f} not available")
            continue
        city = CityConfig(name=r, roads=RoadSource(source="osm", path=str(f)))
        todo.append((r, lambda city=city: load_road_network(city, cache_dir=CityPaths(root, city.name).roads_dir)))
    for name, load in todo:
        net = load()
        res = run_city(name, net, args.n, args.resolutions, args.frames, cfg, root, args.duration, args.tag)
        results.append(res)
        print(f"\n{name} ({res['source']}, n={res['n_samples']}, tiles {res['tile_sizes_used_m']} m)")
        print(f"{'res':>4} {'K':>3} {'snap':>5} {'median m':>9} {'p90 m':>7} {'TME %':>6} {'med px':>7} {'m/px':>6}")
        for row in res["rows"]:
            px = "" if row["median_error_px"] is None else f"{row['median_error_px']:.2f}"
            print(f"{row['resolution']:>4} {row['frames']:>3} {str(row['snapped']):>5} {row['median_error_m']:>9.1f} "
                  f"{row['p90_error_m']:>7.1f} {row['tme_pct']:>6.1f} {px:>7} {row['metres_per_pixel']:>6.1f}")
        for o in res["oracle"]:
            print(f"  oracle (true route, K={o['frames']} frame times): median {o['median_error_m']:.1f} m, p90 {o['p90_error_m']:.1f} m")
    return results


if __name__ == "__main__":
    main()

"""Round-trip floor of the map-visual representation by resolution and frame count.

    .venv/bin/python bench/render_floor.py [--cities gridville ringtown] [--real aguascalientes krems]
                                           [--n 40] [--resolutions 32 64 128] [--frames 9 17]
                                           [--window-s 300 --stride-s 150] [--pick random] [--tag TAG]

For each city: windows of W = 600 s (the city's materialised samples when ``data/<city>/`` holds
samples, signaling, towers and sample_truth; otherwise synthetic drives with towers on a jittered
grid, see ``ml.render.synthetic``), rendered and decoded back (``ml.evaluation.floor.round_trip_floor``).
``--window-s`` (optionally ``--stride-s``) instead cuts windows of another W, in memory, from the
city's materialised ``pairs``/``signaling``/``towers``/``gps`` with ``ml.pairing.cut_samples`` (the
pipeline's sample seed, city seed * 1000 + 5, unless ``--cut-seed``); nothing is written under data/.
``--pick random`` takes ``--n`` windows at random (seeded) over all splits instead of the first ``--n``.
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
from ml.evaluation.floor import oracle_time_floor, round_trip_floor  # noqa: E402
from ml.render.synthetic import synthetic_windows  # noqa: E402

SHARED = Path(os.environ.get("SIG2GPS_SHARED_CITIES", Path(__file__).resolve().parents[2] / "shared" / "cities"))
REAL = {"aguascalientes": "aguascalientes.osm.bz2", "krems": "krems.osm.gz", "bayreuth": "bayreuth.osm.gz",
        "campo_grande": "campo_grande.osm.gz"}


def _window_stats(samples: pd.DataFrame) -> dict:
    """Windows per split and the median number of signaling records per window."""
    return {"n_windows": len(samples), "by_split": {k: int(v) for k, v in samples["split"].value_counts().items()},
            "median_records": float(samples["n_records"].median()) if len(samples) else None}


def _pick(samples: pd.DataFrame, n: int, pick: str, seed: int) -> pd.DataFrame:
    if pick == "random" and len(samples) > n:
        return samples.sample(n=n, random_state=seed).sort_index()
    return samples.head(n)


def _windows(name: str, net, paths: CityPaths, n: int, cfg: RenderConfig, seed: int, duration_s: float | None,
             window_s: float | None = None, stride_s: float | None = None, cut_seed: int | None = None,
             pick: str = "head"):
    """Materialised samples when present (and no other duration is asked), else synthetic windows.

    With ``window_s``: windows of that W cut in memory from the materialised pairs (see module doc).
    Returns (windows, source, stats) where stats counts windows per split (all and picked) or is None.
    """
    from ml.render.dataset import prepare_samples

    if window_s is not None:
        from ml.cities import load_city
        from ml.pairing import SampleConfig, cut_samples

        tabs = {k: pd.read_parquet(paths.table(k)) for k in ("pairs", "signaling", "towers", "gps")}
        scfg = SampleConfig(window_s=window_s, stride_s=stride_s or window_s / 2)
        cseed = cut_seed if cut_seed is not None else load_city(name).seed * 1000 + 5
        samples, truth = cut_samples(tabs["pairs"], tabs["signaling"], tabs["towers"], tabs["gps"], net.crs, scfg,
                                     seed=cseed, zoom_sizes_m=cfg.zoom_sizes_m, margin_m=cfg.margin_m)
        chosen = _pick(samples, n, pick, seed)
        prepared = prepare_samples(net, chosen, tabs["signaling"], tabs["towers"], truth, cfg)
        src = f"cut in memory from materialised pairs (W={scfg.window_s:g} s, stride {scfg.stride_s:g} s, seed {cseed})"
        return prepared, src, {"all": _window_stats(samples), "picked": _window_stats(chosen)}
    need = [paths.table("samples"), paths.table("signaling"), paths.table("towers"), paths.sample_truth]
    if duration_s is None and all(p.is_file() for p in need):
        all_samples = pd.read_parquet(need[0])
        samples = _pick(all_samples, n, pick, seed)
        prepared = prepare_samples(net, samples, pd.read_parquet(need[1]), pd.read_parquet(need[2]),
                                   pd.read_parquet(need[3]), cfg)
        return prepared, "materialised samples", {"all": _window_stats(all_samples), "picked": _window_stats(samples)}
    ws, _ = synthetic_windows(net, n, seed=seed, cfg=cfg, duration_s=duration_s or 600.0)
    return ws, "synthetic drives (ml.render.synthetic)", None


def run_city(name: str, net, n: int, resolutions, frames, cfg: RenderConfig, root: Path,
             duration_s: float | None = None, tag: str = "", window_s: float | None = None,
             stride_s: float | None = None, cut_seed: int | None = None, pick: str = "head") -> dict:
    paths = CityPaths(root, name, "demo")
    t = time.perf_counter()
    ws, source, stats = _windows(name, net, paths, n, cfg, seed=7, duration_s=duration_s, window_s=window_s,
                                 stride_s=stride_s, cut_seed=cut_seed, pick=pick)
    rows = round_trip_floor(net, ws, resolutions, frames, cfg)
    out = {
        "city": name, "source": source, "n_samples": len(ws), "duration_s": float(ws[0].duration_s) if ws else None,
        "zoom_sizes_m": list(cfg.zoom_sizes_m), "margin_m": cfg.margin_m,
        "tile_sizes_used_m": sorted({float(w.tile.size_m) for w in ws}),
        "rows": rows, "oracle": [oracle_time_floor(ws, k) for k in frames], "elapsed_s": time.perf_counter() - t,
        **({"windows": stats, "pick": pick} if stats is not None else {}),
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
    ap.add_argument("--window-s", type=float, default=None,
                    help="cut windows of this W (s) in memory from data/<city>/pairs (+ signaling, towers, gps)")
    ap.add_argument("--stride-s", type=float, default=None, help="window start spacing with --window-s (default W/2)")
    ap.add_argument("--cut-seed", type=int, default=None, help="split seed with --window-s (default city seed*1000+5)")
    ap.add_argument("--pick", choices=["head", "random"], default="head",
                    help="which --n windows of real samples: the first n (default) or n at random (seed 7)")
    args = ap.parse_args(argv)
    root = project_root()
    cfg = RenderConfig() if args.zoom_sizes is None else RenderConfig(zoom_sizes_m=tuple(args.zoom_sizes))
    results = []
    todo = [(c, lambda c=c: load_road_network(load_city(c), cache_dir=CityPaths(root, c, "demo").roads_dir)) for c in args.cities]
    for r in args.real:
        f = SHARED / REAL[r]
        if not f.is_file():
            print(f"skip {r}: {f} not available")
            continue
        city = CityConfig(name=r, roads=RoadSource(source="osm", path=str(f)))
        todo.append((r, lambda city=city: load_road_network(city, cache_dir=CityPaths(root, city.name, "demo").roads_dir)))
    for name, load in todo:
        net = load()
        res = run_city(name, net, args.n, args.resolutions, args.frames, cfg, root, args.duration, args.tag,
                       args.window_s, args.stride_s, args.cut_seed, args.pick)
        results.append(res)
        print(f"\n{name} ({res['source']}, n={res['n_samples']}, tiles {res['tile_sizes_used_m']} m)")
        if "windows" in res:
            print(f"  windows: {res['windows']}")
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

"""Benchmark: simulation (each table), pairing and sample cutting per city, with calibration.

Usage: ``.venv/bin/python bench/simulate.py [--cities gridville ringtown campo_grande] [--out outputs/bench/simulate.json]``

Cities are the demo cities of ``cities/`` plus the real extract ``../shared/cities/campo_grande.osm.gz``
(skipped when absent). Every city runs the default (demo) configuration with the city's seed.
Writes seconds per stage, rows produced, pairing precision/recall, calibration and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.cities import CityConfig, RoadSource, load_city, load_road_network  # noqa: E402
from ml.pairing import PairingConfig, SampleConfig, cut_samples, pair_devices, pairing_quality  # noqa: E402
from ml.simulate import (  # noqa: E402
    SimulationConfig,
    calibration_report,
    simulate_measurement_reports,
    simulate_signaling,
    simulate_taxi_gps,
    simulate_towers,
)

SHARED = REPO.parent / "shared" / "cities"


def city_config(name: str) -> CityConfig | None:
    if name == "campo_grande":
        path = SHARED / "campo_grande.osm.gz"
        if not path.is_file():
            return None
        return CityConfig(name="campo_grande", seed=31, roads=RoadSource(source="osm", path=str(path)))
    return load_city(name, REPO)


def bench_city(name: str, cache: Path) -> dict | None:
    city = city_config(name)
    if city is None:
        print(f"[bench] {name}: extract not found, skipped", flush=True)
        return None
    t = time.perf_counter()
    net = load_road_network(city, cache_dir=cache / name)
    seconds = {"road_network": time.perf_counter() - t}
    sim = SimulationConfig(**city.simulation)
    seed = city.seed
    out: dict = {"nodes": net.n_nodes, "edges": net.n_edges}

    def timed(stage, fn, *args):
        t0 = time.perf_counter()
        res = fn(*args)
        seconds[stage] = time.perf_counter() - t0
        print(f"[bench] {name}: {stage} {seconds[stage]:.1f} s", flush=True)
        return res

    towers, antennas = timed("towers", simulate_towers, net, sim, seed)
    gps = timed("gps", simulate_taxi_gps, net, sim, seed)
    signaling, truth = timed("signaling", simulate_signaling, net, antennas, gps, sim, seed)
    mr = timed("mr", simulate_measurement_reports, net, antennas, gps, signaling, truth, sim, seed)
    seconds["simulation_total"] = sum(seconds[k] for k in ("towers", "gps", "signaling", "mr"))
    pairs = timed("pairing", pair_devices, signaling, towers, gps, PairingConfig(**city.pairing))
    samples, sample_truth = timed("samples", cut_samples, pairs, signaling, towers, gps, net.crs, SampleConfig(), seed)
    cal = timed("calibration", calibration_report, net, towers, gps, signaling, truth, sim.pingpong_window_s, mr,
                samples, sample_truth)
    out["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    out["rows"] = {"towers": len(towers), "gps": len(gps), "signaling": len(signaling), "mr": len(mr),
                   "truth_links": len(truth), "pairs": len(pairs), "samples": len(samples),
                   "sample_truth": len(sample_truth)}
    out["samples_by_split"] = {k: int(v) for k, v in samples["split"].value_counts().items()}
    out["pairing"] = pairing_quality(pairs, truth, signaling)
    out["calibration"] = {k: v for k, v in cal.items() if not k.endswith("_reference_source")}
    out["calibration_sources"] = {k: v for k, v in cal.items() if k.endswith("_reference_source")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cities", nargs="+", default=["gridville", "ringtown", "campo_grande"])
    ap.add_argument("--out", default=str(REPO / "outputs" / "bench" / "simulate.json"))
    ap.add_argument("--cache", default=str(REPO / "outputs" / "bench" / "cache"))
    args = ap.parse_args()
    result = {
        "benchmark": "simulate",
        "config": "demo defaults (SimulationConfig, PairingConfig, SampleConfig) with the city's seed",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "cities": {},
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for name in args.cities:
        res = bench_city(name, Path(args.cache))
        if res is not None:
            result["cities"][name] = res
            out_path.write_text(json.dumps(result, indent=2, default=float))  # keep partial results
    out_path.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({c: {"seconds": r["seconds"], "pairing": r["pairing"]} for c, r in result["cities"].items()},
                     indent=1))


if __name__ == "__main__":
    main()

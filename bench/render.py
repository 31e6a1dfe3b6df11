"""Benchmark: render throughput (64 px, K = 9, 2 workers), single-core render time, decode throughput.

    .venv/bin/python bench/render.py [--city gridville] [--n 600] [--resolution 64] [--frames 9]

Writes ``outputs/bench/render.json`` with ``samples_per_s`` (render_samples end to end, arrays
written to disk), ``render_ms_per_sample`` (one core, in memory: the condition image and the
K-frame target video of one window, city raster already built; the target is well under 10 ms,
20 ms at most), ``decode_samples_per_s`` (snapped with the HMM engine, one process),
``decode_unsnapped_samples_per_s`` and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ml.cities import load_city, load_road_network, project_root  # noqa: E402
from ml.paths import CityPaths  # noqa: E402
from ml.render import RenderConfig  # noqa: E402
from bench.common import machine  # noqa: E402
from ml.render.arrays import RenderedArrays  # noqa: E402
from ml.render.dataset import render_samples  # noqa: E402
from ml.render.synthetic import synthetic_windows, windows_to_tables  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-decode", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    root = project_root()
    city = load_city(args.city)
    net = load_road_network(city, cache_dir=CityPaths(root, args.city, "demo").roads_dir)
    cfg = RenderConfig(resolution=args.resolution, frames=args.frames, workers=args.workers)
    t = time.perf_counter()
    ws, towers = synthetic_windows(net, args.n, seed=1, cfg=cfg)
    tables = windows_to_tables(net, ws, towers)
    t_synth = time.perf_counter() - t

    tmp = Path(tempfile.mkdtemp(prefix="bench_render_"))
    try:
        from ml.render import image

        image._CITY_RASTERS.clear()  # count the one-off city raster build in both runs
        t = time.perf_counter()
        render_samples(net, *tables, cfg, tmp / "r", workers=args.workers)
        wall = time.perf_counter() - t
        image._CITY_RASTERS.clear()
        t = time.perf_counter()
        render_samples(net, *tables, cfg, tmp / "r1", workers=1)
        wall1 = time.perf_counter() - t
        from ml.render import render_condition_image, render_target_video

        t = time.perf_counter()  # one core, in memory, no disk: the renderer itself
        for w in ws:
            cond = render_condition_image(net, w.tile, args.resolution, w.record_xy, w.tower_xy, w.record_t)
            render_target_video(cond, w.tile, args.resolution, w.truth_xy, w.truth_t, w.duration_s, args.frames)
        render_ms = 1000.0 * (time.perf_counter() - t) / len(ws)
        ra = RenderedArrays(tmp / "r")
        from ml.evaluation.preview import write_previews

        gallery = CityPaths(root, args.city, "demo").outputs / "render" / "gallery"
        write_previews(ra, gallery, net=net, n=4, snap=True)
        from ml.decode import decode_video_to_trajectory

        m = min(args.n_decode, len(ra))
        eval_t = [w.truth_t for w in ws[:m]]
        res = {}
        for snap in (False, True):
            t = time.perf_counter()
            for i in range(m):
                decode_video_to_trajectory(np.asarray(ra.video(i)), ra.tile(i), args.resolution, ra.duration_s(i),
                                           net, eval_t[i], snap=snap)
            res[snap] = m / (time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "city": args.city, "resolution": args.resolution, "frames": args.frames, "workers": args.workers,
        "n_samples": args.n, "samples_per_s": args.n / wall, "samples_per_s_one_worker": args.n / wall1,
        "render_ms_per_sample": render_ms,
        "decode_samples_per_s": res[True], "decode_unsnapped_samples_per_s": res[False],
        "n_decoded": m, "synthetic_inputs_s": t_synth, "machine": machine(),
        "command": "python bench/render.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    path = Path(args.out) if args.out else root / "outputs" / "bench" / "render.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

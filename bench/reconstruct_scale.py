"""Benchmark: batch reconstruction on Ray Data (``ml.batch.reconstruct_dataset``) with 1 and 2 local workers.

    export DAGSTER_HOME=/tmp/dh_batch GX_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1
    sig2gps run gridville --profile ci --select '*samples'      # the signaling table it reads
    python -m bench.reconstruct_scale [--city gridville] [--profile ci] [--video-devices 6]

The city's signaling table (``data/<city>/<profile>/signaling.parquet``) is written as hive partitions
``day=/hour=`` (so windows straddle the hour folders), then ``industrial_hmm`` and the video model (the
shipped base checkpoint ``models/sig2gps-base-64px-k17.pt`` with the ``demo`` serving config: 300 s
windows, one Euler step) reconstruct every window with 1 and then 2 actors, on one local Ray started here
with 3 logical CPUs (one per actor and one for the read and shuffle tasks) for every run. The video runs
read the first ``--video-devices`` devices only, to keep the run to a few minutes on CPU. Each method is
also run in this process, without Ray, on the same windows (the same map function called once on all of
them), as the single-process reference. Times are wall clock from reading the table to the last output
file (actor start and model load included). Writes ``outputs/bench/reconstruct_scale.json`` and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from bench.common import ROOT, write_result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--city", default="gridville")
    ap.add_argument("--profile", default="ci", help="whose signaling and towers tables are read")
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "sig2gps-base-64px-k17.pt"))
    ap.add_argument("--video-devices", type=int, default=6, help="devices whose windows the video runs reconstruct")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import pandas as pd
    import ray

    from ml.batch import city_inputs, reconstruct_dataset, video_source_from_checkpoint, window_rows
    from ml.batch import write_partitioned_signaling
    from ml.batch.reconstruct import HMMWindows, VideoWindows
    from ml.cities import load_city
    from ml.config import stage_config
    from ml.paths import CityPaths

    paths = CityPaths(ROOT, args.city, args.profile)
    sig_path = paths.table("signaling")
    if not sig_path.is_file():
        print(f"{sig_path}: not materialised (sig2gps run {args.city} --profile {args.profile} --select '*samples')",
              file=sys.stderr)
        return 2
    sig = pd.read_parquet(sig_path)
    inputs = city_inputs(args.city, args.profile, ROOT, footprints=True)  # the video checkpoint was trained on them
    samples_cfg = stage_config("samples", args.profile, load_city(args.city))
    # the base checkpoint was trained with the demo profile's windows and render settings
    video = video_source_from_checkpoint(args.checkpoint, args.city, "demo")
    hmm_duration, hmm_eval = 300.0, float(samples_cfg.eval_interval_s)
    if abs(video.duration_s() - hmm_duration) > 1e-6:
        print(f"{args.checkpoint}: trained on {video.duration_s()} s windows, the benchmark compares 300 s ones",
              file=sys.stderr)
        return 2

    work = ROOT / "outputs" / "bench" / "reconstruct_scale"
    shutil.rmtree(work, ignore_errors=True)
    devices = sorted(sig["device_id"].astype(str).unique())
    tables = {"industrial_hmm": sig, "video": sig[sig["device_id"].astype(str).isin(devices[:args.video_devices])]}
    for method, t in tables.items():
        write_partitioned_signaling(t, work / "in" / method)

    rows = []
    ray.init(num_cpus=max(args.workers) + 1, include_dashboard=False, log_to_driver=False)
    try:
        for method, t in tables.items():
            # single-process reference: the same map function on all windows at once, no Ray
            t0 = time.perf_counter()
            win = window_rows(t, hmm_duration)
            fn = HMMWindows(inputs, hmm_duration, hmm_eval) if method == "industrial_hmm" else VideoWindows(video, inputs)
            ref = fn(win)
            ref_s = time.perf_counter() - t0
            row = {"method": method, "devices": int(t["device_id"].nunique()), "records": int(len(t)),
                   "windows": int(win.num_rows), "in_process_s": round(ref_s, 2),
                   "in_process_windows_per_s": round(win.num_rows / ref_s, 3), "ray": []}
            del fn, ref
            for n in args.workers:
                load = os.getloadavg()[0]
                res = reconstruct_dataset(work / "in" / method, work / "out" / f"{method}_{n}", method, inputs,
                                          video=video if method == "video" else None,
                                          duration_s=hmm_duration if method == "industrial_hmm" else None,
                                          eval_interval_s=hmm_eval, num_workers=n)
                if res.n_windows != win.num_rows:
                    raise RuntimeError(f"{method} with {n} workers: {res.n_windows} windows written, expected {win.num_rows}")
                row["ray"].append({"workers": n, "seconds": round(res.seconds, 2),
                                   "windows_per_s": round(res.windows_per_s, 3), "failed": res.n_failed,
                                   "fallback_mar": res.n_fallback, "gpus_per_worker": res.gpus_per_worker,
                                   "load_avg_1m_before": round(load, 2)})
                print(f"{method}: {n} worker(s) {res.n_windows} windows in {res.seconds:.1f} s "
                      f"({res.windows_per_s:.2f}/s)", flush=True)
            by_n = {r["workers"]: r["windows_per_s"] for r in row["ray"]}
            if 1 in by_n and 2 in by_n:
                row["scaling_2_over_1"] = round(by_n[2] / by_n[1], 3)
            rows.append(row)
    finally:
        ray.shutdown()

    result = {"city": args.city, "profile": args.profile, "checkpoint": os.path.relpath(args.checkpoint, ROOT),
              "window_s": hmm_duration, "eval_interval_s_hmm": hmm_eval,
              "video_serving": {k: v for k, v in (video.serving_config or {}).items() if k != "render"},
              "ray": ray.__version__, "ray_logical_cpus": max(args.workers) + 1, "rows": rows}
    write_result("reconstruct_scale", result)
    print(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    """The results table: trajectories (windows) per second in one process and on Ray with N workers."""
    ns = sorted({r["workers"] for row in rows for r in row["ray"]})
    head = ["method", "windows", "in process, no Ray (win/s)"] + [f"Ray, {n} worker{'s' if n > 1 else ''} (win/s; s)"
                                                                 for n in ns] + ["scaling 2 / 1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        by_n = {r["workers"]: r for r in row["ray"]}
        cells = [row["method"], str(row["windows"]), f"{row['in_process_windows_per_s']:.2f}"]
        cells += [f"{by_n[n]['windows_per_s']:.2f}; {by_n[n]['seconds']:.1f}" if n in by_n else "-" for n in ns]
        cells.append(f"{row['scaling_2_over_1']:.2f}x" if "scaling_2_over_1" in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

"""``sig2gps`` command line: register cities, materialise assets in-process, batch reconstruction.

Runs are recorded in the repository's Dagster instance (``DAGSTER_HOME=.dagster_home``), so they
appear in the Dagster UI (``make ui``) like runs launched from there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _setup_env(root: Path) -> None:
    os.environ.setdefault("DAGSTER_HOME", str(root / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get()


def cmd_city_add(args: argparse.Namespace, root: Path) -> int:
    from pydantic import ValidationError

    from ml.cities import CityConfig, RoadSource, write_city
    from ml.cities.config import OSM_SUFFIXES

    if args.osm:
        osm = Path(args.osm)
        if not osm.is_file():
            print(f"error: --osm {osm}: file not found", file=sys.stderr)
            return 2
        if not str(osm).lower().endswith(OSM_SUFFIXES):
            print(f"error: --osm {osm}: must end with one of {', '.join(OSM_SUFFIXES)}", file=sys.stderr)
            return 2
        from ml.cities.osm import check_osm_file

        try:
            check_osm_file(osm, display=f"--osm {args.osm}")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        # store paths relative to the repository root when possible, so the registry is portable
        path = os.path.relpath(osm.resolve(), root)
        roads = RoadSource(source="osm", path=path)
    elif args.place:
        roads = RoadSource(source="place", place=args.place)
    elif args.bbox:
        roads = RoadSource(source="bbox", bbox=tuple(args.bbox))
    else:
        roads = RoadSource(source="synthetic", kind=args.synthetic, size_km=args.size_km)
    try:
        cfg = CityConfig(name=args.name, seed=args.seed, roads=roads, description=args.description or "")
    except ValidationError as exc:
        for e in exc.errors():
            print(f"error: city '{args.name}': field '{'.'.join(map(str, e['loc'])) or 'name'}': {e['msg']}", file=sys.stderr)
        return 2
    p = write_city(cfg, root, overwrite=args.force)
    from dagster_project.sensors import sync_city_partitions

    add, _ = sync_city_partitions(_instance())
    print(f"wrote {p.relative_to(root)}; Dagster partition {'added' if args.name in add else 'present'}: {args.name}")
    print(f"next: sig2gps run {args.name} --select road_network")
    return 0


def cmd_city_list(args: argparse.Namespace, root: Path) -> int:
    from ml.cities import list_cities, load_city

    for name in list_cities(root):
        c = load_city(name, root)
        src = c.roads.path or c.roads.place or c.roads.kind or c.roads.bbox
        print(f"{name:20s} {c.roads.source:10s} {src}  data={c.data_source}")
    return 0


SCENARIO_HELP = ("the radio network of a simulated city: layered (default: several carriers, overshooting masts, "
                 "tower-table errors), regular (the one-carrier network of the results before issue 27) or "
                 "hre_paper; it writes the city's usual folders, replacing what another scenario made there")


def cmd_run(args: argparse.Namespace, root: Path) -> int:
    from dagster_project.runner import run_city

    ok = run_city(args.city, selection=args.select, profile=args.profile, root=root, day=args.day,
                  scenario=args.scenario)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace, root: Path) -> int:
    from dagster_project.runner import evaluation_summary, run_city, where_to_look

    ok = run_city(args.city, selection="*", profile=args.profile, root=root, scenario=args.scenario)
    if ok:
        print(evaluation_summary(args.city, root, args.profile))
    print(where_to_look(args.city, root, args.profile))
    return 0 if ok else 1


def cmd_reconstruct(args: argparse.Namespace, root: Path) -> int:
    """Batch reconstruction: one file with a registered model in-process (``--engine local``, the default for
    a file), or a partitioned Parquet table on Ray Data (``--engine ray``, the default for a folder)."""
    from ml.tracking import default_tracking_uri

    uri = args.tracking_uri or os.environ.get("SIG2GPS_MLFLOW_TRACKING_URI") or default_tracking_uri(root)
    if args.operator_day:
        if args.city or args.signaling:
            print("error: --operator-day brings its own roads, towers and signaling; leave out --city and --signaling",
                  file=sys.stderr)
            return 2
        if args.engine == "local":
            print("error: --operator-day is a partitioned table: it runs on --engine ray", file=sys.stderr)
            return 2
        if args.method == "video":
            print("error: --operator-day runs industrial_hmm (--method industrial_hmm): the video model and "
                  "learned_hmm read a registered city's footprints", file=sys.stderr)
            return 2
        return _reconstruct_ray(args, Path(args.operator_day) / "signaling", uri, root)
    if not args.city or not args.signaling:
        print("error: --city and --signaling are required (or --operator-day)", file=sys.stderr)
        return 2
    signaling = Path(args.signaling)
    if not signaling.exists():
        print(f"error: --signaling {signaling}: no such file or folder", file=sys.stderr)
        return 2
    engine = args.engine or ("ray" if signaling.is_dir() else "local")
    if engine == "local":
        if signaling.is_dir():
            print(f"error: --signaling {signaling} is a folder: a partitioned table runs on --engine ray", file=sys.stderr)
            return 2
        if args.method != "video":
            print(f"error: --method {args.method} runs on --engine ray (local mode needs no cluster)", file=sys.stderr)
            return 2
        if args.ray_address or args.workers != 1:
            print("error: --ray-address and --workers apply to --engine ray only", file=sys.stderr)
            return 2
        if not args.model:
            print("error: --model is required for --method video", file=sys.stderr)
            return 2
        return _reconstruct_local(args, signaling, uri)
    return _reconstruct_ray(args, signaling, uri, root)


def _reconstruct_local(args: argparse.Namespace, signaling: Path, uri: str) -> int:
    from mlflow.exceptions import MlflowException

    from ml.serving import reconstruct_file

    try:
        out = reconstruct_file(args.model, args.city, signaling, Path(args.out), tracking_uri=uri)
    except MlflowException as exc:
        print(f"error: model '{args.model}' in the MLflow store {uri}: {exc.message}. "
              f"Materialise sft_checkpoint for the city first (sig2gps run {args.city}).", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _reconstruct_ray(args: argparse.Namespace, signaling: Path, uri: str, root: Path) -> int:
    """``ml.batch.reconstruct_dataset`` with the city's road network and towers; errors exit 2 with their message."""
    from ml.batch import VideoSource, city_inputs, reconstruct_dataset, video_source_from_checkpoint
    from ml.cities import load_city
    from ml.config import stage_config

    from ml.batch import operator_day_inputs

    video = None
    try:
        if args.operator_day:  # the day's own roads and towers, the profile's window settings
            inputs, signaling = operator_day_inputs(args.operator_day)
            samples = stage_config("samples", args.profile)
        else:
            # learned_hmm reads the city's footprints; so does a pipeline checkpoint (its training arrays placed
            # records through them), which serving must reproduce
            inputs = city_inputs(args.city, args.profile, root, footprints=args.method == "learned_hmm" or (
                args.method == "video" and bool(args.model) and args.model.endswith(".pt")))
            samples = stage_config("samples", args.profile, load_city(args.city))
        if args.method == "video":
            if not args.model:
                print("error: --model is required for --method video (a models:/ URI or a .pt checkpoint)",
                      file=sys.stderr)
                return 2
            if args.model.endswith(".pt"):
                if not Path(args.model).is_file():
                    print(f"error: --model {args.model}: checkpoint file not found", file=sys.stderr)
                    return 2
                video = video_source_from_checkpoint(args.model, args.city, args.profile)
            else:
                video = VideoSource(model_uri=args.model, tracking_uri=uri)
        batch = stage_config("batch", args.profile)
        if args.records_per_bucket is not None:
            # validated: a value breaking the setting's rule (>= 10) is named in the error
            batch = type(batch).model_validate({**batch.model_dump(), "records_per_bucket": args.records_per_bucket})
        res = reconstruct_dataset(signaling, Path(args.out), args.method, inputs, video=video,
                                  duration_s=None if video else samples.window_s,
                                  eval_interval_s=samples.eval_interval_s, num_workers=args.workers,
                                  ray_address=args.ray_address, overwrite=args.overwrite, config=batch,
                                  progress=print)
    except (FileNotFoundError, FileExistsError, ValueError, ConnectionError, RuntimeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(res.failures_by_reason.items()))
    print(f"wrote {res.out_dir}: {res.n_windows} windows ({res.n_failed} failed{f' [{reasons}]' if reasons else ''}, "
          f"{res.n_fallback} fallback_mar), {res.n_rows} rows in {res.n_buckets} buckets"
          f"{'' if res.n_buckets_run == res.n_buckets else f' ({res.n_buckets_run} run now, the others done before)'}; "
          f"{res.seconds:.1f} s with {res.num_workers} worker(s) "
          f"({res.windows_per_s:.2f} windows/s, peak RSS per worker {res.peak_rss_mb_per_worker:.0f} MiB)")
    return 0 if res.n_failed == 0 else 1


def cmd_transfer(args: argparse.Namespace, root: Path) -> int:
    """Cross-city transfer matrix: the ``transfer_base_models`` and ``transfer_report`` assets materialised
    in-process (the models trained on the source sets, then the matrix; logged to MLflow ``sig2gps-transfer``)."""
    from ml.evaluation.transfer import missing_inputs
    from dagster_project.assets.transfer import report_dir
    from dagster_project.runner import run_transfer

    source_sets = [s for s in args.train if any(c for c in s.split(","))]
    targets = [c for c in args.test.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    cities = list(dict.fromkeys([*(c for s in source_sets for c in s.split(",") if c), *targets]))
    missing = missing_inputs(root, cities, args.profile, video="video" in methods)
    if missing:
        print("error: the transfer matrix needs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    ok = run_transfer({"source_sets": source_sets, "profile": args.profile, "methods": methods,
                       "video_base_steps": args.video_base_steps},
                      {"source_sets": source_sets, "targets": targets, "profile": args.profile, "methods": methods,
                       "finetune_steps": args.finetune_steps, "max_test": args.max_test,
                       "video_finetune_steps": args.video_finetune_steps}, root=root)
    if not ok:
        return 1
    out = report_dir(root, args.profile)
    print((out / "transfer.md").read_text())
    print(f"transfer report: {out}/transfer.md, transfer.json, transfer.png (MLflow experiment sig2gps-transfer)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sig2gps", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    city = sub.add_parser("city", help="manage the city registry (cities/*.toml)")
    csub = city.add_subparsers(dest="city_command", required=True)
    add = csub.add_parser("add", help="register a city and its Dagster partition")
    add.add_argument("name")
    src = add.add_mutually_exclusive_group(required=True)
    src.add_argument("--osm", help="local OSM extract (.osm, .osm.gz, .osm.bz2, .osm.pbf)")
    src.add_argument("--place", help="place name for osmnx download (needs network)")
    src.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="bounding box to download")
    src.add_argument("--synthetic", choices=["grid", "radial", "organic"], help="generate a synthetic city")
    add.add_argument("--seed", type=int, default=0)
    add.add_argument("--size-km", type=float, default=4.0, help="synthetic city size")
    add.add_argument("--description", default="")
    add.add_argument("--force", action="store_true", help="overwrite an existing city file")
    add.set_defaults(func=cmd_city_add)
    ls = csub.add_parser("list", help="list registered cities")
    ls.set_defaults(func=cmd_city_list)

    run = sub.add_parser("run", help="materialise assets for a city in-process (recorded in the Dagster instance)")
    run.add_argument("city")
    run.add_argument("--select", default="*", help="Dagster asset selection, e.g. 'road_network' or 'road_network*' (default: all)")
    run.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"])
    run.add_argument("--day", default=None, help="YYYY-MM-DD: materialise the city's per-day assets of that day "
                     "(group operator: a simulated operator day, its out-of-core pairing and windows)")
    run.add_argument("--scenario", default=None, help=SCENARIO_HELP)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="materialise the whole pipeline for one city and print where to look")
    demo.add_argument("--city", default="gridville")
    demo.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"])
    demo.add_argument("--scenario", default=None, help=SCENARIO_HELP)
    demo.set_defaults(func=cmd_demo)

    rec = sub.add_parser("reconstruct", help="batch reconstruction (one file in-process, or a partitioned table on Ray)")
    rec.add_argument("--model", default=None, help="MLflow model URI, e.g. models:/sig2gps-video-gridville@sft "
                     "(--engine ray also takes a .pt checkpoint); needed for --method video")
    rec.add_argument("--city", default=None, help="a registered city (its roads and the profile's towers)")
    rec.add_argument("--signaling", default=None, help="CSV or Parquet with ts, cell_id (and optional device_id), "
                     "or a folder of (hive-)partitioned Parquet with device_id, ts, cell_id, event")
    rec.add_argument("--operator-day", default=None, help="instead of --city and --signaling: an operator day's "
                     "folder as `python -m ml.scale generate` writes it, with its own roads, towers and signaling "
                     "(--engine ray, --method industrial_hmm)")
    rec.add_argument("--out", required=True, help="output CSV or Parquet of ts, lon, lat (a folder for --engine ray)")
    rec.add_argument("--tracking-uri", default=None, help="default: the repository's mlflow/ store")
    rec.add_argument("--engine", choices=["local", "ray"], default=None,
                     help="local: one process (default for a file); ray: Ray Data (default for a folder)")
    rec.add_argument("--method", choices=["video", "industrial_hmm", "learned_hmm"], default="video",
                     help="--engine ray only for industrial_hmm and learned_hmm (the city's cell footprints)")
    rec.add_argument("--workers", type=int, default=1, help="actors of the reconstruction stage (--engine ray)")
    rec.add_argument("--ray-address", default=None, help="a running Ray cluster (host:port, ray://host:port or auto); "
                     "default: a local Ray started for this command")
    rec.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"],
                     help="which towers table and window settings (--engine ray)")
    rec.add_argument("--overwrite", action="store_true", help="start a non-empty --out folder over (--engine ray; "
                     "without it a folder of an interrupted run with the same inputs and method is resumed, and one "
                     "with other inputs or method is refused)")
    rec.add_argument("--records-per-bucket", type=int, default=None, help="records per bucket of devices, the unit "
                     "of work written atomically (bounds a worker's memory; default: the profile's batch setting)")
    rec.set_defaults(func=cmd_reconstruct)

    tr = sub.add_parser("transfer", help="score models trained on source cities on unseen target cities")
    tr.add_argument("--train", action="append", required=True,
                    help="a comma-separated source set (repeat for several sets), e.g. --train gridville,ringtown")
    tr.add_argument("--test", required=True, help="comma-separated target cities, e.g. krems,bayreuth")
    tr.add_argument("--profile", default="demo", choices=["ci", "demo", "gpu"])
    tr.add_argument("--finetune-steps", type=int, default=100, help="seq2seq fine-tune budget on each target (steps)")
    tr.add_argument("--max-test", type=int, default=100, help="test windows per target (first ones)")
    tr.add_argument("--methods", default="industrial_hmm,seq2seq,video",
                    help="comma-separated, among industrial_hmm, seq2seq, video (video: a base from random weights "
                    "on each source set's rendered windows; needs each city's rendered_videos)")
    tr.add_argument("--video-base-steps", type=int, default=100, help="video base budget from random weights (steps)")
    tr.add_argument("--video-finetune-steps", type=int, default=10, help="video fine-tune budget per target (steps)")
    tr.set_defaults(func=cmd_transfer)
    return p


def main(argv: list[str] | None = None) -> int:
    from ml.cities.config import project_root, CityConfigError

    args = build_parser().parse_args(argv)
    root = project_root()
    _setup_env(root)
    try:
        return int(args.func(args, root) or 0)
    except CityConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""Materialise a city's assets in-process, recorded in the repository's Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


def resources_for(profile: str, root: Path, scenario: str | None = None) -> dict:
    from dagster_project.resources import ComputeResource, MLflowResource, PathsResource

    return {
        "paths": PathsResource(root=str(root)),
        "mlflow": MLflowResource(),
        "compute": ComputeResource(profile=profile, scenario=scenario or ""),
    }


def parse_selection(selection: str) -> dg.AssetSelection:
    """Dagster selection syntax, plus comma-separated lists as a union (``road_network,cell_towers``).

    An asset written together with another (``signaling_records`` and ``truth_links``, ``samples`` and
    ``sample_truth``) brings the other along: one step writes both.
    """
    parts = [p.strip() for p in selection.split(",") if p.strip()]
    if not parts:
        raise ValueError("empty asset selection")
    sel = dg.AssetSelection.from_string(parts[0])
    for p in parts[1:]:
        sel = sel | dg.AssetSelection.from_string(p)
    return sel.required_multi_asset_neighbors()


def run_city(city: str, selection: str = "*", profile: str = "demo", root: Path | None = None,
             instance: dg.DagsterInstance | None = None, raise_on_error: bool = False,
             console_level: str = "INFO", day: str | None = None, scenario: str | None = None) -> bool:
    """Materialise ``selection`` (Dagster selection syntax) for one city partition; True on success.

    Only the city's per-city assets run (``*`` is the city pipeline); with ``day`` (``YYYY-MM-DD``), the
    per-city-and-day assets of that day (group ``operator``, ``dagster_project.assets.operator``) instead.

    The console shows Dagster's messages from ``console_level`` up (INFO: what the assets report, not the
    DEBUG event stream), then one line per step with its status and duration; the run's full event log,
    every level, is written to ``outputs/<city>/<profile>/logs/run_<id>.log``, whose path is printed.
    ``scenario``: the radio network of a simulated city (``ml.simulate.config.SCENARIOS``, e.g. ``regular``
    for the network of the results before issue 27); default the city file's, else the layered network.
    """
    from ml.cities import load_city
    from ml.cities.config import project_root
    from ml.io import remove_stale_temps
    from ml.paths import CityPaths
    from dagster_project.console import asset_lines
    from dagster_project.definitions import ASSET_MODULES, partitioned_by
    from dagster_project.partitions import cities_partitions, city_days_partitions
    from dagster_project.sensors import sync_city_partitions

    root = root or project_root()
    load_city(city, root)  # clear error for an unknown or invalid city before Dagster starts
    paths = CityPaths(root, city, profile)
    # a run killed mid-write (SIGKILL, OOM, power) leaves hidden temporaries; they are never read as output,
    # but DVC would version those under data/, so they go before anything runs (live writers' are kept)
    stale = remove_stale_temps(root / "data" / city, root / "outputs" / city)
    if stale:
        print(f"removed {len(stale)} temporary file(s) left by an interrupted run: "
              f"{', '.join(str(q.relative_to(root)) for q in stale[:5])}{' ...' if len(stale) > 5 else ''}")
    instance = instance or _local_instance()
    _sync_partitions(instance, sync_city_partitions)
    partitions_def = cities_partitions if day is None else city_days_partitions
    selected = parse_selection(selection) & partitioned_by(partitions_def)
    job = dg.define_asset_job("sig2gps_run", selection=selected, partitions_def=partitions_def)
    defs = dg.Definitions(assets=dg.load_assets_from_modules(ASSET_MODULES),
                          asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES), jobs=[job],
                          resources=resources_for(profile, root, scenario),
                          loggers={"console": dg.colored_console_logger, "asset_lines": asset_lines})
    print(f"materialising {city}{'' if day is None else ' ' + day} (profile {profile}); one line per asset as it finishes:")
    result = defs.resolve_job_def("sig2gps_run").execute_in_process(
        partition_key=city if day is None else dg.MultiPartitionKey({"city": city, "day": day}),
        instance=instance,
        raise_on_error=raise_on_error,
        tags={"sig2gps/profile": profile, "sig2gps/launched_by": "cli"},
        run_config={"loggers": {"console": {"config": {"log_level": console_level}}, "asset_lines": {}}},
    )
    print(step_summary(instance, result.run_id))
    print(f"full log: {write_run_log(instance, result.run_id, paths.logs)}")
    mats = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}; materialised {len(mats)}: {', '.join(mats)}")
    if not result.success:
        for ev in result.all_events:
            if ev.is_step_failure:
                err = ev.step_failure_data.error
                print(f"step {ev.step_key} failed: {failure_message(err)}")
        # a failed blocking check fails its step with Dagster's generic error; what went wrong is the check's own
        for line in failed_check_lines(result.all_events):
            print(line)
    return result.success


def run_transfer(bases_config: dict, report_config: dict, root: Path | None = None,
                 instance: dg.DagsterInstance | None = None, raise_on_error: bool = False) -> bool:
    """Materialise ``transfer_base_models`` then ``transfer_report`` (the cross-city assets) in-process with
    their run configs (``TransferBasesConfig`` / ``TransferConfig`` fields); True on success. What
    ``sig2gps transfer`` runs, so the matrix and its models have their lineage in the instance."""
    from ml.cities.config import project_root
    from dagster_project.assets.transfer import transfer_base_models, transfer_report

    root = root or project_root()
    instance = instance or _local_instance()
    result = dg.materialize(
        [transfer_base_models, transfer_report], instance=instance, resources=resources_for(bases_config.get("profile", "demo"), root),
        run_config=dg.RunConfig({"transfer_base_models": {"config": bases_config},
                                 "transfer_report": {"config": report_config}}),
        raise_on_error=raise_on_error, tags={"sig2gps/launched_by": "cli"})
    if not result.success:
        for ev in result.all_events:
            if ev.is_step_failure:
                print(f"step {ev.step_key} failed: {failure_message(ev.step_failure_data.error)}")
    return result.success


def _local_instance() -> dg.DagsterInstance:
    """``DagsterInstance.get()`` under a file lock in ``DAGSTER_HOME``: opening a fresh sqlite instance creates
    its schema, and two processes doing that at once (two cities started together on a new checkout) fail
    with ``table alembic_version already exists``."""
    import fcntl
    import os

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.get()
    Path(home).mkdir(parents=True, exist_ok=True)
    with open(Path(home) / ".sig2gps_instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.get()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sync_partitions(instance: dg.DagsterInstance, sync, attempts: int = 5) -> None:
    """Add the registry's cities as partitions. Two runs started together (two cities at once) both add the
    missing partitions, and the second insert breaks the instance's unique key: the partition is there
    then, so the sync is read again rather than failing the run."""
    import time

    from sqlalchemy.exc import IntegrityError

    for attempt in range(attempts):
        try:
            sync(instance)
            return
        except IntegrityError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def failed_check_lines(events) -> list[str]:
    """``check <asset>/<check> failed: <description>`` for each asset check of ``events`` that did not pass."""
    lines = []
    for ev in events:
        if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = ev.event_specific_data
            if not data.passed:
                lines.append(f"check {data.asset_key.to_user_string()}/{data.check_name} failed: "
                             f"{data.description or '(no description)'}")
    return lines


def failure_message(err) -> str:
    """What went wrong, in the words of the code that raised it: the innermost cause of a step's error
    (Dagster wraps an asset's exception in ``DagsterExecutionStepExecutionError: Error occurred while
    executing op ...``), with its class name but not its module path."""
    if err is None:
        return ""
    while getattr(err, "cause", None) is not None and (err.cls_name or "").startswith("Dagster"):
        err = err.cause  # through Dagster's wrappers to the asset's own exception (not to what caused that)
    msg = (err.message or "").strip()
    head, sep, rest = msg.partition(": ")
    if sep and err.cls_name and head.split(".")[-1] == err.cls_name:
        msg = f"{err.cls_name}: {rest}"
    return msg


def step_summary(instance: dg.DagsterInstance, run_id: str) -> str:
    """One line per step of the run, in the order they started: status and wall time."""
    stats = sorted(instance.get_run_step_stats(run_id), key=lambda st: st.start_time or 0.0)
    lines = ["", f"{'step':28s} {'status':10s} {'seconds':>8s}"]
    for st in stats:
        dur = (st.end_time - st.start_time) if st.start_time and st.end_time else float("nan")
        lines.append(f"{st.step_key:28s} {st.status.value.lower() if st.status else '?':10s} {dur:8.1f}")
    return "\n".join(lines)


def write_run_log(instance: dg.DagsterInstance, run_id: str, folder: Path) -> Path:
    """The run's event log at every level as text (time, level, step, message); returns the file."""
    import logging
    from datetime import datetime, timezone

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run_{run_id}.log"
    with path.open("w") as f:
        for e in instance.all_logs(run_id):
            when = datetime.fromtimestamp(e.timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            f.write(f"{when} {logging.getLevelName(e.level):7s} {e.step_key or '-'}: {e.message}\n")
    return path


def evaluation_summary(city: str, root: Path, profile: str) -> str:
    """The evaluation report's median errors per track and method (best first), or why there is none."""
    import json

    from ml.paths import CityPaths

    path = CityPaths(root, city, profile).report / "evaluation.json"
    if not path.is_file():
        return f"(no evaluation report: {path} is missing)"
    report = json.loads(path.read_text())
    lines = ["", f"Evaluation ({report.get('split', 'test')} split, {report.get('n_samples', '?')} windows; "
             "median / p90 error in metres, windows without output):"]
    for track, methods in report.get("tracks", {}).items():
        for name, m in sorted(methods.items(), key=lambda kv: kv[1].get("median_error_m", float("inf"))):
            lines.append(f"  {track:10s} {name:16s} {m.get('median_error_m', float('nan')):8.1f} "
                         f"{m.get('p90_error_m', float('nan')):8.1f}   {m.get('n_failed', 0)} of {m.get('n', '?')}")
    return "\n".join(lines)


def where_to_look(city: str, root: Path, profile: str) -> str:
    from ml.paths import CityPaths

    paths = CityPaths(root, city, profile)
    out = paths.outputs
    return "\n".join([
        "",
        "Where to look:",
        "  Dagster UI:  make ui         -> http://127.0.0.1:3000 (assets, runs, checks, metadata)",
        "  MLflow UI:   make mlflow-ui  -> http://127.0.0.1:5000 (runs per stage, registered models)",
        f"  Reports:     {out}/report/evaluation.md and evaluation.json",
        f"  Data:        {paths.data}/ (Parquet tables, DVC-versioned: {paths.data_version_file.name})",
        f"  Gallery:     {out}/render/gallery/",
    ])

"""Cross-city transfer: models trained on source cities, scored on target cities they never saw.

For each source set, ``seq2seq`` is trained on the union of the sources' train windows (early
stopping on the sources' val windows). On each target it is scored on the target's test windows
zero-shot, then after a fine-tune of at most ``finetune_steps`` steps on the target's train windows
(the fine-tuned weights are kept only when they beat the zero-shot weights on the target's val
windows: a choice made on val, never on test). ``industrial_hmm`` needs no training and is the
reference. The result is one matrix (source set x target x method x regime: median error and the
share of windows decoded), written as JSON, Markdown and a heat map.

The video model (``video``, optional: :class:`VideoTransfer`) cannot use the shipped base checkpoint
(``models/README.md``): it was trained on every real extract of ``../shared/cities``, so no real target
would be unseen by it. Instead a base is trained from random weights on the source set's rendered train
windows only (its weights chosen on the sources' val windows by the SFT trainer's ``best_val``
selection), scored zero-shot on each target's test windows, then fine-tuned on the target's train
windows (the trainer's selection on the target's val windows keeps the starting weights when the
fine-tune does not help). Both are scored by the evaluation's own path: ``predict_video_method``
samples each window's video and decodes it to GPS.

:func:`log_transfer_to_mlflow` is the one MLflow record of a matrix, used by ``sig2gps transfer`` and
the ``transfer_report`` asset alike; :func:`missing_inputs` lists what a matrix needs and lacks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ml.observation.context import SampleContext

log = logging.getLogger(__name__)

#: the splits a city's windows come in
SPLITS = ("train", "val", "test")
#: the methods a matrix can hold
METHODS = ("industrial_hmm", "seq2seq", "video")


@dataclass
class VideoTransfer:
    """Settings of the video rows of a transfer matrix.

    ``rendered`` maps each city (sources and targets) to its rendered-arrays folder
    (``outputs/<city>/<profile>/render/r<px>_k<frames>``). ``sft`` is the profile's SFT config; the base
    takes its model, batch and validation settings with ``base_steps`` steps from random weights at
    ``base_lr``; the fine-tune takes it as it is with ``finetune_steps`` steps. ``evaluation`` is the
    profile's ``EvaluationConfig`` (sampler steps, noise, batch), as in the evaluation report.
    """

    rendered: dict[str, Path]
    sft: Any
    evaluation: Any
    base_steps: int
    finetune_steps: int
    base_lr: float = 3e-4
    device: str = "cpu"


@dataclass
class CityWindows:
    """One city's windows by split (``ml.baselines.SampleContext`` with their truth)."""

    name: str
    splits: dict[str, list[SampleContext]]


@dataclass
class TransferBase:
    """The models trained on one source set (``+``-joined city names): the seq2seq base and the video base
    (None when the matrix has no such rows), with what their training reported (``info``, per model)."""

    source_set: str
    seq2seq: Path | None = None
    video: Path | None = None
    info: dict[str, dict[str, Any]] = field(default_factory=dict)


#: the manifest of a models folder's bases (:func:`train_transfer_bases` writes it, :func:`load_transfer_bases` reads)
BASES_FILE = "bases.json"


def train_transfer_bases(
    cities: dict[str, CityWindows],
    source_sets: Sequence[Sequence[str]],
    models_dir: str | Path,
    seq2seq_cfg,
    methods: Sequence[str] = ("seq2seq",),
    video: VideoTransfer | None = None,
    progress: Callable[[str], None] = log.info,
) -> dict[str, TransferBase]:
    """Train each source set's bases under ``models_dir``: seq2seq on the union of the sources' train windows
    (early-stopped on their val windows) and, with ``video`` in ``methods``, the video base from random weights
    on their rendered train windows (weights chosen on their val windows). Nothing of a target is read.
    Writes the manifest ``models_dir/bases.json``; returns the bases by source-set name."""
    from ml.io import write_json_atomic
    from ml.train.seq2seq import train_seq2seq

    models = Path(models_dir)
    if "video" in methods and video is None:
        raise ValueError("transfer: method 'video' needs its settings (video=VideoTransfer(...))")
    bases: dict[str, TransferBase] = {}
    for sources in source_sets:
        name = "+".join(sources)
        base = TransferBase(name)
        if "seq2seq" in methods:
            t0 = time.perf_counter()
            src = train_seq2seq([c for s in sources for c in cities[s].splits["train"]],
                                [c for s in sources for c in cities[s].splits["val"]], seq2seq_cfg, models / name)
            base.seq2seq = Path(src.checkpoint_path)
            base.info["seq2seq"] = {"n_train": src.n_train, "best_step": src.best_step,
                                    "seconds": time.perf_counter() - t0}
            progress(f"transfer: seq2seq on {name}: {src.n_train} train windows, best step {src.best_step}, "
                     f"{base.info['seq2seq']['seconds']:.0f} s")
        if "video" in methods:
            base.video, base.info["video"] = _train_video_base(video, sources, models, progress)
        bases[name] = base
    manifest = {n: {"seq2seq": None if b.seq2seq is None else str(b.seq2seq),
                    "video": None if b.video is None else str(b.video), "info": b.info} for n, b in bases.items()}
    models.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest, models / BASES_FILE)
    return bases


def load_transfer_bases(models_dir: str | Path) -> dict[str, TransferBase]:
    """The bases :func:`train_transfer_bases` wrote under ``models_dir`` (clear error when there are none)."""
    import json

    f = Path(models_dir) / BASES_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no transfer base models; train them first (materialise transfer_base_models, "
                                "or run `sig2gps transfer`)")
    return {n: TransferBase(n, None if m["seq2seq"] is None else Path(m["seq2seq"]),
                            None if m["video"] is None else Path(m["video"]), m.get("info", {}))
            for n, m in json.loads(f.read_text()).items()}


def models_dir_for(out_dir: str | Path) -> Path:
    """Where a report folder's models are trained: ``out_dir``'s sibling ``models/<out_dir name>``, outside the
    report folder (written at once) so that an interrupted video training resumes."""
    out_dir = Path(out_dir)
    return out_dir.parent / "models" / out_dir.name


def score(method: str, run, contexts: Sequence[SampleContext]) -> dict[str, float]:
    """Median error (m) over all evaluation points and the share of windows with an output."""
    from ml.evaluation.methods import score_run, summarise

    s = summarise(score_run(run, contexts))
    return {"median_error_m": float(s["median_error_m"]), "decoded_share": 1.0 - s["n_failed"] / max(len(contexts), 1),
            "n": len(contexts)}


def _seq2seq_val_median(checkpoint: Path, val: Sequence[SampleContext]) -> float:
    from ml.evaluation.seq2seq import predict_seq2seq_method

    return score("seq2seq", predict_seq2seq_method(checkpoint, val), val)["median_error_m"]


def transfer_matrix(
    cities: dict[str, CityWindows],
    source_sets: Sequence[Sequence[str]],
    targets: Sequence[str],
    out_dir: str | Path,
    seq2seq_cfg,
    finetune_steps: int,
    max_test: int | None = 100,
    progress: Callable[[str], None] = log.info,
    video: VideoTransfer | None = None,
    models_dir: str | Path | None = None,
    methods: Sequence[str] = ("industrial_hmm", "seq2seq"),
    bases: dict[str, TransferBase] | None = None,
) -> pd.DataFrame:
    """Rows ``source_set, target, method, regime, median_error_m, decoded_share, n``; also written to
    ``out_dir/transfer.json``, ``transfer.md`` and ``transfer.png``, all three at once (``ml.io.atomic_dir``:
    a failed run leaves the previous report as it was). ``methods`` are among :data:`METHODS`; ``video``
    (its rows: :func:`_video_rows`) needs the ``video`` settings. ``bases``: the source sets' models from
    :func:`train_transfer_bases` (the ``transfer_base_models`` asset); without them they are trained here. The
    targets' fine-tunes are trained under ``models_dir`` (default :func:`models_dir_for`)."""
    from ml.baselines import SIGNALING_METHODS
    from ml.evaluation.methods import run_method
    from ml.evaluation.seq2seq import predict_seq2seq_method
    from ml.io import atomic_dir
    from ml.train.seq2seq import train_seq2seq

    out_dir = Path(out_dir)
    models = Path(models_dir) if models_dir is not None else models_dir_for(out_dir)
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise ValueError(f"transfer: methods {sorted(unknown) or '(none)'}; choose among {', '.join(METHODS)}")
    if "video" in methods and video is None:
        raise ValueError("transfer: method 'video' needs its settings (video=VideoTransfer(...))")
    overlap = {t for t in targets for s in source_sets if t in s}
    if overlap:
        raise ValueError(f"transfer: target cities {sorted(overlap)} are also sources; a target must be unseen")
    if bases is None:
        bases = train_transfer_bases(cities, source_sets, models, seq2seq_cfg, methods, video, progress)
    lacking = [f"{'+'.join(s)} ({m})" for s in source_sets for m in ("seq2seq", "video")
               if m in methods and getattr(bases.get("+".join(s)) or TransferBase(""), m) is None]
    if lacking:
        raise ValueError(f"transfer: no base model for {', '.join(lacking)}; train the bases with the same source "
                         "sets and methods (materialise transfer_base_models)")
    rows = []
    tests = {t: cities[t].splits["test"][:max_test] if max_test else cities[t].splits["test"] for t in targets}
    for t in targets:
        if not tests[t] or not cities[t].splits["train"] or not cities[t].splits["val"]:
            raise ValueError(f"transfer: target '{t}' needs train, val and test windows "
                             f"({ {k: len(v) for k, v in cities[t].splits.items()} })")
        if "industrial_hmm" in methods:
            run = run_method("industrial_hmm", "signaling", SIGNALING_METHODS["industrial_hmm"], tests[t])
            rows.append({"source_set": "-", "target": t, "method": "industrial_hmm", "regime": "no training",
                         **score("industrial_hmm", run, tests[t])})
    for sources in (source_sets if "seq2seq" in methods else ()):
        name = "+".join(sources)
        base = bases[name].seq2seq
        for t in targets:
            zero = predict_seq2seq_method(base, tests[t])
            rows.append({"source_set": name, "target": t, "method": "seq2seq", "regime": "zero-shot",
                         **score("seq2seq", zero, tests[t])})
            ft_cfg = seq2seq_cfg.model_copy(update={"max_steps": finetune_steps, "warmup_steps": 0,
                                                    "val_every_n_steps": max(1, finetune_steps // 5)})
            t1 = time.perf_counter()
            ft = train_seq2seq(cities[t].splits["train"], cities[t].splits["val"], ft_cfg,
                               models / f"{name}__ft_{t}", init_checkpoint=base)
            ft_s = time.perf_counter() - t1
            val = cities[t].splits["val"]
            keep = Path(ft.checkpoint_path) if (_seq2seq_val_median(Path(ft.checkpoint_path), val)
                                                <= _seq2seq_val_median(base, val)) else base
            tuned = predict_seq2seq_method(keep, tests[t])
            rows.append({"source_set": name, "target": t, "method": "seq2seq",
                         "regime": f"fine-tuned ({finetune_steps} steps, {ft_s:.0f} s)"
                                   + ("" if keep == Path(ft.checkpoint_path) else "; val kept zero-shot"),
                         **score("seq2seq", tuned, tests[t])})
            progress(f"transfer: {name} -> {t}: zero-shot {rows[-2]['median_error_m']:.1f} m, "
                     f"fine-tuned {rows[-1]['median_error_m']:.1f} m")
    settings = {"source_sets": [list(s) for s in source_sets], "targets": list(targets),
                "finetune_steps": finetune_steps, "max_test": max_test, "methods": list(methods),
                "seq2seq": seq2seq_cfg.model_dump(mode="json"),
                "bases": {"+".join(s): {**bases["+".join(s)].info, "seq2seq_model": str(bases["+".join(s)].seq2seq),
                                        "video_model": str(bases["+".join(s)].video)} for s in source_sets}}
    if "video" in methods:
        rows.extend(_video_rows(video, bases, source_sets, targets, tests, models, progress))
        settings["video"] = {"finetune_steps": video.finetune_steps, "sft": video.sft.model_dump(mode="json"),
                             "evaluation": video.evaluation.model_dump(mode="json")}
    df = pd.DataFrame(rows)
    with atomic_dir(out_dir) as tmp:
        write_transfer_report(df, tmp, settings)
    log.info("transfer report in %s", out_dir)
    return df


def _train_video_base(video: VideoTransfer, sources: Sequence[str], models: Path,
                      progress: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """A source set's video base: from random weights on the sources' rendered train windows, its weights
    chosen on their val windows; returns the model file and what the training reported."""
    from ml.render.arrays import concat_rendered
    from ml.train.sft import train_sft

    missing = [c for c in sources if not (Path(video.rendered.get(c, "")) / "index.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"transfer: no rendered arrays for {missing}; materialise their rendered_videos "
                                f"(`sig2gps run <city> --select '*rendered_videos'`)")
    name = "+".join(sources)
    base_dir = models / f"video_{name}"
    data = base_dir / "data"
    if not (data / "index.parquet").is_file():
        # train and val windows only: the sources' test windows are never used
        concat_rendered([video.rendered[s] for s in sources], data, splits=("train", "val"))
    # from random weights (init_checkpoint None): the shipped base has seen the real targets. best_val
    # selection on the sources' val windows (head error; at the start, half-way and the end: validations
    # cost as much as many steps on a CPU) is the only choice made
    base_cfg = video.sft.model_copy(update={
        "init_checkpoint": None, "max_steps": video.base_steps, "lr": video.base_lr,
        "warmup_steps": min(50, video.base_steps // 10), "select_checkpoint": "best_val",
        "select_metric": "val/head_err_px", "val_every_n_steps": max(1, video.base_steps // 2),
        "ckpt_every_n_steps": max(1, video.base_steps // 2), "progress_bar": False})
    t0 = time.perf_counter()
    base = train_sft(data, base_dir / "sft", base_cfg, resume=True)
    info = {"global_step": base.global_step, "selected": base.selected, "seconds": time.perf_counter() - t0}
    progress(f"transfer: video base on {name}: {base.global_step} steps from random weights, "
             f"{info['seconds']:.0f} s this call, weights kept: {base.selected}")
    return Path(base.checkpoint_path), info


def _video_rows(video: VideoTransfer, bases: dict[str, TransferBase], source_sets: Sequence[Sequence[str]],
                targets: Sequence[str], tests: dict[str, list[SampleContext]], models: Path,
                progress: Callable[[str], None]) -> list[dict]:
    """The ``video`` rows: per source set its base, zero-shot and fine-tuned on each target."""
    from ml.evaluation.video import predict_video_method
    from ml.train.sft import train_sft

    missing = [c for c in targets if not (Path(video.rendered.get(c, "")) / "index.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"transfer: no rendered arrays for {missing}; materialise their rendered_videos "
                                f"(`sig2gps run <city> --select '*rendered_videos'`)")
    rows = []
    for sources in source_sets:
        name = "+".join(sources)
        base, base_steps = bases[name].video, bases[name].info.get("video", {}).get("global_step", "?")
        for t in targets:
            zero = predict_video_method("video", base, Path(video.rendered[t]), tests[t], video.evaluation,
                                        device=video.device)
            rows.append({"source_set": name, "target": t, "method": "video",
                         "regime": f"zero-shot (base: {base_steps} steps from random weights)",
                         **score("video", zero, tests[t])})
            ft_cfg = video.sft.model_copy(update={
                "init_checkpoint": None, "max_steps": video.finetune_steps, "warmup_steps": 0,
                "select_checkpoint": "best_val", "select_metric": "val/head_err_px",
                "val_every_n_steps": video.finetune_steps, "progress_bar": False})
            t1 = time.perf_counter()
            # the trainer scores the starting weights on the target's val windows too, and keeps them when the
            # fine-tuned ones (validated once, at the end) are not better there: seq2seq's rule, decided on val
            ft = train_sft(video.rendered[t], models / f"video_{name}" / f"ft_{t}", ft_cfg, resume=True,
                           init_checkpoint=base)
            ft_s = time.perf_counter() - t1
            tuned = predict_video_method("video", Path(ft.checkpoint_path), Path(video.rendered[t]), tests[t],
                                         video.evaluation, device=video.device)
            rows.append({"source_set": name, "target": t, "method": "video",
                         "regime": f"fine-tuned ({video.finetune_steps} steps, {ft_s:.0f} s)"
                                   + ("; val kept zero-shot" if ft.selected == "start" else ""),
                         **score("video", tuned, tests[t])})
            progress(f"transfer: video {name} -> {t}: zero-shot {rows[-2]['median_error_m']:.1f} m "
                     f"({rows[-2]['decoded_share']:.0%} decoded), fine-tuned {rows[-1]['median_error_m']:.1f} m "
                     f"({rows[-1]['decoded_share']:.0%})")
    return rows


def write_transfer_report(df: pd.DataFrame, out_dir: Path, settings: dict) -> None:
    """``transfer.json`` (rows and settings), ``transfer.md`` (the matrix) and ``transfer.png`` (heat map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ml.io import write_json_atomic, write_text_atomic

    write_json_atomic({"settings": settings, "rows": df.to_dict("records")}, out_dir / "transfer.json")
    df = df.assign(row=df["method"] + " | " + df["source_set"] + " | " + df["regime"].str.split(" \\(").str[0])
    med = df.pivot_table(index="row", columns="target", values="median_error_m", aggfunc="first")
    dec = df.pivot_table(index="row", columns="target", values="decoded_share", aggfunc="first")
    lines = ["| method | sources | regime | " + " | ".join(med.columns) + " |",
             "|---|---|---|" + "---|" * len(med.columns)]
    for r in med.index:
        cells = [f"{med.loc[r, c]:.1f} m ({dec.loc[r, c]:.0%})" for c in med.columns]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    write_text_atomic("Median error on the targets' test windows (share of windows with an output):\n\n"
                      + "\n".join(lines) + "\n", out_dir / "transfer.md")
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(med.columns), 1 + 0.45 * len(med.index)))
    im = ax.imshow(med.to_numpy(), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(med.columns)), med.columns)
    ax.set_yticks(range(len(med.index)), med.index, fontsize=8)
    for i in range(len(med.index)):
        for j in range(len(med.columns)):
            ax.text(j, i, f"{med.iat[i, j]:.0f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label="median error (m)")
    ax.set_title("cross-city transfer: test windows of unseen targets")
    fig.tight_layout()
    fig.savefig(out_dir / "transfer.png", dpi=110)
    plt.close(fig)


def city_windows(root: Path, city: str, profile: str) -> CityWindows:
    """A materialised city's windows by split (needs its ``samples`` and ``sample_truth``)."""
    from ml.baselines import build_sample_contexts
    from ml.cities import load_city, load_road_network
    from ml.io import read_table
    from ml.paths import CityPaths

    cp = CityPaths(root, city, profile)
    if not cp.table("samples").is_file():
        raise FileNotFoundError(f"{cp.table('samples')}: '{city}' has no samples for profile '{profile}'; "
                                f"run `sig2gps run {city} --profile {profile} --select '+samples'` first")
    net = load_road_network(load_city(city, root), cache_dir=cp.roads_dir)
    tabs = {n: read_table(cp.table(n), n) for n in ("samples", "signaling", "towers")}
    truth = read_table(cp.sample_truth, "sample_truth")
    return CityWindows(city, {s: build_sample_contexts(tabs["samples"], tabs["signaling"], tabs["towers"], net,
                                                       sample_truth=truth, split=s) for s in SPLITS})


#: the tables a city needs in a transfer matrix (``city_windows``), and what the video rows add
TABLES = ("samples", "sample_truth", "signaling", "towers")


def rendered_dir(root: Path, city: str, profile: str) -> Path:
    """The city's rendered-arrays folder for ``profile`` (as the ``rendered_videos`` asset writes it)."""
    from ml.cities import load_city
    from ml.config import stage_config
    from ml.paths import CityPaths

    cfg = stage_config("render", profile, load_city(city, root))
    return CityPaths(root, city, profile).render_dir(cfg.resolution, cfg.frames)


def missing_inputs(root: Path, cities: Sequence[str], profile: str, video: bool = False) -> list[str]:
    """One line per input a matrix over ``cities`` lacks (an unregistered city, a table not materialised,
    no rendered arrays when ``video``), each naming the city, the table and how to make it; empty when all
    are there."""
    from ml.cities import load_city
    from ml.cities.config import CityConfigError
    from ml.paths import CityPaths

    out = []
    for city in cities:
        try:
            load_city(city, root)
        except (CityConfigError, FileNotFoundError) as exc:
            out.append(f"city '{city}' is not registered ({exc}); `sig2gps city add {city} ...`")
            continue
        cp = CityPaths(root, city, profile)
        need = [(n, cp.sample_truth if n == "sample_truth" else cp.table(n)) for n in TABLES]
        if video:
            need.append(("rendered_videos", rendered_dir(root, city, profile) / "index.parquet"))
        for name, path in need:
            if not Path(path).is_file():
                out.append(f"city '{city}': table '{name}' not materialised for profile '{profile}' ({path}); "
                           f"`sig2gps run {city} --profile {profile} --select '*{'rendered_videos' if video else 'samples'}'`")
    return out


def log_transfer_to_mlflow(df: pd.DataFrame, out_dir: Path, source_sets: Sequence[Sequence[str]],
                           targets: Sequence[str], profile: str, tracking_uri: str,
                           tags: dict[str, str] | None = None) -> str:
    """One run in the MLflow experiment ``sig2gps-transfer``: a median-error metric per row
    (``<method>.<sources>.<target>.<regime>``) and the report folder as artifacts; returns the run id.
    ``sig2gps transfer`` and the ``transfer_report`` asset both log through here."""
    import mlflow

    from ml.tracking import ensure_experiment, git_commit

    sources = ";".join(",".join(s) for s in source_sets)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=ensure_experiment("sig2gps-transfer", tracking_uri),
                          run_name=f"{'|'.join(','.join(s) for s in source_sets)}->{','.join(targets)}",
                          tags={"sources": sources, "targets": ",".join(targets), "profile": profile,
                                "stage": "transfer", "git_commit": git_commit(), **(tags or {})}) as run:
        for r in df.to_dict("records"):
            key = f"{r['method']}.{r['source_set']}.{r['target']}.{r['regime'].split(' (')[0]}".replace("+", "_")
            mlflow.log_metric(key.replace(" ", "_").replace(";", ""), r["median_error_m"])
        mlflow.log_artifacts(str(out_dir), artifact_path="transfer")
        return run.info.run_id


def _video_settings(root: Path, cities: Sequence[str], profile: str, base_steps: int,
                    finetune_steps: int) -> VideoTransfer:
    from ml.config import stage_config

    return VideoTransfer(rendered={c: rendered_dir(root, c, profile) for c in cities},
                         sft=stage_config("sft", profile), evaluation=stage_config("evaluation", profile),
                         base_steps=base_steps, finetune_steps=finetune_steps)


def run_transfer_bases(root: Path, source_sets: Sequence[Sequence[str]], profile: str, models_dir: Path,
                       methods: Sequence[str] = ("industrial_hmm", "seq2seq"), video_base_steps: int = 100,
                       progress: Callable[[str], None] = log.info) -> dict[str, TransferBase]:
    """:func:`train_transfer_bases` over materialised source cities with the profile's configs: what the
    ``transfer_base_models`` asset runs (``sig2gps transfer`` materialises it). Only the sources are read."""
    from ml.config import stage_config

    names = list(dict.fromkeys(sum(map(list, source_sets), [])))
    cities = {c: city_windows(root, c, profile) for c in names}
    video = _video_settings(root, names, profile, video_base_steps, 0) if "video" in methods else None
    return train_transfer_bases(cities, [list(s) for s in source_sets], models_dir, stage_config("seq2seq", profile),
                                methods, video, progress)


def run_transfer(root: Path, source_sets: Sequence[Sequence[str]], targets: Sequence[str], profile: str,
                 out_dir: Path, finetune_steps: int, max_test: int | None,
                 methods: Sequence[str] = ("industrial_hmm", "seq2seq"), video_finetune_steps: int = 10,
                 bases: dict[str, TransferBase] | None = None, models_dir: Path | None = None,
                 progress: Callable[[str], None] = log.info) -> pd.DataFrame:
    """:func:`transfer_matrix` over materialised cities with the profile's configs and the source sets' bases
    (:func:`run_transfer_bases`; default those in ``models_dir``, :func:`load_transfer_bases`): what the
    ``transfer_report`` asset runs. Check the inputs with :func:`missing_inputs` first."""
    from ml.config import stage_config

    models_dir = Path(models_dir) if models_dir is not None else models_dir_for(out_dir)
    bases = bases if bases is not None else load_transfer_bases(models_dir)
    names = list(dict.fromkeys([*sum(map(list, source_sets), []), *targets]))
    cities = {c: city_windows(root, c, profile) for c in names}
    video = _video_settings(root, names, profile, 0, video_finetune_steps) if "video" in methods else None
    return transfer_matrix(cities, [list(s) for s in source_sets], list(targets), out_dir,
                           stage_config("seq2seq", profile), finetune_steps=finetune_steps, max_test=max_test,
                           progress=progress, video=video, methods=methods, bases=bases, models_dir=models_dir)

"""Cross-city transfer: models trained on source cities, scored on target cities they never saw.

For each source set, ``seq2seq`` is trained on the union of the sources' train windows (early
stopping on the sources' val windows). On each target it is scored on the target's test windows
zero-shot, then after a fine-tune of at most ``finetune_steps`` steps on the target's train windows
(the fine-tuned weights are kept only when they beat the zero-shot weights on the target's val
windows: a choice made on val, never on test). ``industrial_hmm`` needs no training and is the
reference. The result is one matrix (source set x target x method x regime: median error and the
share of windows decoded), written as JSON, Markdown and a heat map.

The video model is not in the matrix: the shipped base checkpoint (``models/README.md``) was trained
on every real extract of ``../shared/cities``, so no real target would be unseen by it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ml.baselines.context import SampleContext

log = logging.getLogger(__name__)

#: the splits a city's windows come in
SPLITS = ("train", "val", "test")


@dataclass
class CityWindows:
    """One city's windows by split (``ml.baselines.SampleContext`` with their truth)."""

    name: str
    splits: dict[str, list[SampleContext]]


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
) -> pd.DataFrame:
    """Rows ``source_set, target, method, regime, median_error_m, decoded_share, n``; also written to
    ``out_dir/transfer.json``, ``transfer.md`` and ``transfer.png``."""
    from ml.baselines import SIGNALING_METHODS
    from ml.evaluation.methods import run_method
    from ml.evaluation.seq2seq import predict_seq2seq_method
    from ml.train.seq2seq import train_seq2seq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlap = {t for t in targets for s in source_sets if t in s}
    if overlap:
        raise ValueError(f"transfer: target cities {sorted(overlap)} are also sources; a target must be unseen")
    rows = []
    tests = {t: cities[t].splits["test"][:max_test] if max_test else cities[t].splits["test"] for t in targets}
    for t in targets:
        if not tests[t] or not cities[t].splits["train"] or not cities[t].splits["val"]:
            raise ValueError(f"transfer: target '{t}' needs train, val and test windows "
                             f"({ {k: len(v) for k, v in cities[t].splits.items()} })")
        run = run_method("industrial_hmm", "signaling", SIGNALING_METHODS["industrial_hmm"], tests[t])
        rows.append({"source_set": "-", "target": t, "method": "industrial_hmm", "regime": "no training",
                     **score("industrial_hmm", run, tests[t])})
    for sources in source_sets:
        name = "+".join(sources)
        t0 = time.perf_counter()
        src = train_seq2seq([c for s in sources for c in cities[s].splits["train"]],
                            [c for s in sources for c in cities[s].splits["val"]], seq2seq_cfg,
                            out_dir / "models" / name)
        progress(f"transfer: seq2seq on {name}: {src.n_train} train windows, best step {src.best_step}, "
                 f"{time.perf_counter() - t0:.0f} s")
        for t in targets:
            zero = predict_seq2seq_method(Path(src.checkpoint_path), tests[t])
            rows.append({"source_set": name, "target": t, "method": "seq2seq", "regime": "zero-shot",
                         **score("seq2seq", zero, tests[t])})
            ft_cfg = seq2seq_cfg.model_copy(update={"max_steps": finetune_steps, "warmup_steps": 0,
                                                    "val_every_n_steps": max(1, finetune_steps // 5)})
            t1 = time.perf_counter()
            ft = train_seq2seq(cities[t].splits["train"], cities[t].splits["val"], ft_cfg,
                               out_dir / "models" / f"{name}__ft_{t}", init_checkpoint=src.checkpoint_path)
            ft_s = time.perf_counter() - t1
            val = cities[t].splits["val"]
            keep = Path(ft.checkpoint_path) if (_seq2seq_val_median(Path(ft.checkpoint_path), val)
                                                <= _seq2seq_val_median(Path(src.checkpoint_path), val)) \
                else Path(src.checkpoint_path)
            tuned = predict_seq2seq_method(keep, tests[t])
            rows.append({"source_set": name, "target": t, "method": "seq2seq",
                         "regime": f"fine-tuned ({finetune_steps} steps, {ft_s:.0f} s)"
                                   + ("" if keep == Path(ft.checkpoint_path) else "; val kept zero-shot"),
                         **score("seq2seq", tuned, tests[t])})
            progress(f"transfer: {name} -> {t}: zero-shot {rows[-2]['median_error_m']:.1f} m, "
                     f"fine-tuned {rows[-1]['median_error_m']:.1f} m")
    df = pd.DataFrame(rows)
    write_transfer_report(df, out_dir, {"source_sets": [list(s) for s in source_sets], "targets": list(targets),
                                        "finetune_steps": finetune_steps, "max_test": max_test,
                                        "seq2seq": seq2seq_cfg.model_dump(mode="json")})
    return df


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
    log.info("transfer report in %s", out_dir)


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

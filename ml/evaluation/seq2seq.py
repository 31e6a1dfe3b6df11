"""The seq2seq baseline on evaluation windows: regress the positions, snap them to the roads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ml.observation.context import SampleContext
from ml.evaluation.methods import MethodRun

#: metres per pixel handed to the road snapping: the regressed track is resampled every 20 m and matched
#: with a transition scale of 40 m (``ml.decode.snap_route``); on gridville's val windows 20 gave a median
#: error of 137.0 m, 5 gave 137.7 m (with snap_sigma_m 120)
SNAP_MPP = 20.0


def predict_seq2seq_method(checkpoint: Path, contexts: Sequence[SampleContext], device: str = "cpu",
                           batch_size: int = 256, progress: Callable[[str], None] | None = None,
                           name: str = "seq2seq", gps_prefix: bool = False) -> MethodRun:
    """Positions of every window at its eval times: the model's regression, snapped to the road graph with
    ``ml.decode.snap_route`` (the video decoder's HMM snapping) when the config says ``snap``.

    Windows without records have no output (NaN, counted in ``failures``); so does a window whose
    snapping matched nothing (its unsnapped positions are not passed off as road positions).
    A next-GPS checkpoint (``prefix_s`` set) reads the windows' GPS truth up to ``prefix_s``; it runs only
    with ``gps_prefix=True`` (``ml.nextgps.seq2seq_at_targets``), never as a reconstruction method.
    """
    import torch

    from ml.decode.trajectory import snap_route
    from ml.seq2seq import window_batch
    from ml.seq2seq import load_seq2seq

    model, cfg = load_seq2seq(checkpoint, device=device)
    if (cfg.prefix_s is not None) != gps_prefix:
        raise ValueError(f"{checkpoint}: " + (f"a next-GPS model (it reads the GPS of the first {cfg.prefix_s:g} s); "
                                              "reconstruction needs a checkpoint trained with prefix_s None"
                                              if cfg.prefix_s is not None else
                                              "a reconstruction model (prefix_s None) given a GPS prefix"))
    run = MethodRun(name, "signaling", {}, {})
    batch = window_batch(contexts, cfg, with_target=False)
    by_id = {c.sample_id: c for c in contexts}
    for sid, why in batch.skipped.items():
        run.failures[sid] = why
        run.predictions[sid] = np.full((by_id[sid].n_eval, 2), np.nan)
        run.latency_ms[sid] = float("nan")
    started = time.perf_counter()
    for b in range(0, len(batch), batch_size):
        sl = slice(b, b + batch_size)
        arrays = [torch.from_numpy(a[sl]).to(device) for a in (batch.records, batch.record_mask, batch.query_t,
                                                              batch.query_prior, batch.query_mask)]
        t0 = time.perf_counter()
        with torch.no_grad():
            units = model(*arrays).float().cpu().numpy()
        per_window_ms = (time.perf_counter() - t0) * 1e3 / len(units)
        metres = units * cfg.scale_m + batch.centre[sl][:, None, :]
        for j, sid in enumerate(batch.sample_ids[sl]):
            ctx = by_id[sid]
            t1 = time.perf_counter()
            xy = metres[j, : ctx.n_eval]
            if cfg.snap:
                eval_t = np.asarray(ctx.eval_t, dtype=np.float64)
                xy, _, method, issues = snap_route(ctx.net, xy, eval_t, np.arange(len(xy)), eval_t, SNAP_MPP,
                                                   sigma_m=cfg.snap_sigma_m)
                if method == "none":
                    run.failures[sid] = "; ".join(issues)
                    xy = np.full_like(xy, np.nan)
            run.predictions[sid] = np.asarray(xy, dtype=np.float64)
            run.latency_ms[sid] = per_window_ms + (time.perf_counter() - t1) * 1e3
        if progress:
            from tqdm import tqdm

            progress(f"{name}: " + tqdm.format_meter(min(b + batch_size, len(batch)), len(batch),
                                                     time.perf_counter() - started, ncols=80, unit="window"))
    return run

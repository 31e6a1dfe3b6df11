"""Windows (``SampleContext``) as the arrays the seq2seq model reads.

Positions are in model units: metres relative to the window's mean observation position, divided by
``Seq2SeqConfig.scale_m``, so the model sees the shape of a trace, not where the city is. Each record
sits where the window's observation model puts it (``ctx.observation``: the city's learned footprints in the
pipeline; the hand-made model, ``ml.observation.record_positions``, for windows without one), the same positions
the video model's prior and record tokens use, with how far the model trusts each (its RMS spread, in model units;
a known GPS position gets :data:`GPS_SPREAD_M`). Each evaluation time gets the *prior*: those positions interpolated
in time (MaR on those positions); the model predicts a correction to it.

With ``cfg.prefix_s`` (next-GPS prediction) the window's GPS truth at the evaluation times up to
``prefix_s`` follows the records as extra tokens (event :data:`EVENT_GPS`), those times' prior is the
known position itself, the later times' prior is ``cfg.prefix_prior``'s (by default the records' prior,
as in reconstruction), and only the later times count in the loss (``loss_mask``). The truth after
``prefix_s`` is read only as the training target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ml.observation import HandmadeObservationModel, left_cells
from ml.observation.context import SampleContext
from ml.geo.track import interpolate_positions
from ml.render.arrays import subsample_evenly
from ml.seq2seq.config import Seq2SeqConfig
from ml.validation.contract import EVENTS

#: event id of a name outside the data contract's vocabulary
EVENT_UNKNOWN = len(EVENTS)
#: event id of a known GPS position (the next-GPS prefix tokens)
EVENT_GPS = EVENT_UNKNOWN + 1
_EVENT_ID = {e: i for i, e in enumerate(EVENTS)}
#: spread of a known GPS position (the next-GPS prefix tokens): a taxi GPS fix's typical error
GPS_SPREAD_M = 10.0


@dataclass
class WindowBatch:
    """Arrays of ``N`` windows with ``R`` record slots and ``Q`` evaluation-time slots."""

    records: np.ndarray  # (N, R, 5) float32: x, y (model units), time fraction, event id, spread (model units)
    record_mask: np.ndarray  # (N, R) bool
    query_t: np.ndarray  # (N, Q) float32: evaluation time as a fraction of the window
    query_prior: np.ndarray  # (N, Q, 2) float32: the prior position (model units)
    query_mask: np.ndarray  # (N, Q) bool
    loss_mask: np.ndarray  # (N, Q) bool: the query slots the loss counts (all, or those after the prefix)
    target: np.ndarray | None  # (N, Q, 2) float32 true positions (model units), None without truth
    centre: np.ndarray  # (N, 2) float64: metres of the model units' origin
    sample_ids: list[str]
    skipped: dict[str, str]  # windows left out (no records): sample id -> why
    scale_m: float = 1000.0  # metres per model unit

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to_metres(self, xy_units: np.ndarray) -> np.ndarray:
        """(N, Q, 2) model units -> projected metres."""
        return np.asarray(xy_units, dtype=np.float64) * self.scale_m + self.centre[:, None, :]


def window_batch(contexts: Sequence[SampleContext], cfg: Seq2SeqConfig, with_target: bool = True) -> WindowBatch:
    """The arrays of ``contexts``; windows without records (or, with ``prefix_s``, without a finite GPS
    position in the prefix) are left out and listed in ``skipped``."""
    keep, prefixes, skipped = [], [], {}
    for ctx in contexts:
        if len(ctx.records) == 0:
            skipped[ctx.sample_id] = "no signaling records in the window"
            continue
        if with_target and ctx.truth_xy is None:
            raise ValueError(f"window {ctx.sample_id}: no ground truth to train on (truth_xy is None)")
        if cfg.prefix_s is not None and ctx.truth_xy is None:
            raise ValueError(f"window {ctx.sample_id}: the model reads the GPS of the first {cfg.prefix_s:g} s "
                             "(prefix_s), and the window has none (truth_xy is None)")
        known = _prefix_rows(ctx, cfg.prefix_s)
        if cfg.prefix_s is not None and not len(known):
            skipped[ctx.sample_id] = f"no finite GPS position in the first {cfg.prefix_s:g} s (prefix_s)"
            continue
        keep.append(ctx)
        prefixes.append(known)
    P = max((len(p) for p in prefixes), default=0)
    R, Q = cfg.max_records + P, max((c.n_eval for c in keep), default=1)
    n = len(keep)
    records = np.zeros((n, R, 5), np.float32)
    record_mask = np.zeros((n, R), bool)
    query_t = np.zeros((n, Q), np.float32)
    query_prior = np.zeros((n, Q, 2), np.float32)
    query_mask = np.zeros((n, Q), bool)
    loss_mask = np.zeros((n, Q), bool)
    target = np.zeros((n, Q, 2), np.float32) if with_target else None
    centre = np.zeros((n, 2), np.float64)
    for i, ctx in enumerate(keep):
        rec = ctx.records
        # the window's observation model (the city's footprints when the windows carry them), else hand-made
        model = ctx.observation or HandmadeObservationModel(ctx.towers_xy)
        cells = rec["cell_id"].to_numpy()
        left = left_cells(cells, rec["event"].to_numpy())
        obs = model.positions(cells, left)
        t = rec["t"].to_numpy(np.float64)
        centre[i] = obs.mean(axis=0)
        dur = max(float(ctx.duration_s), 1e-6)
        idx = subsample_evenly(len(t), cfg.max_records)  # the prefix tokens have their own P slots
        m = len(idx)
        records[i, :m, :2] = (obs[idx] - centre[i]) / cfg.scale_m
        records[i, :m, 2] = np.clip(t[idx] / dur, 0.0, 1.0)
        records[i, :m, 3] = [_EVENT_ID.get(str(e), EVENT_UNKNOWN) for e in rec["event"].to_numpy()[idx]]
        records[i, :m, 4] = model.spread_m(cells[idx], left[idx]) / cfg.scale_m
        record_mask[i, :m] = True
        q = ctx.n_eval
        eval_t = np.asarray(ctx.eval_t, np.float64)
        query_t[i, :q] = np.clip(eval_t / dur, 0.0, 1.0)
        prior = interpolate_positions(t, obs, ctx.eval_t, "record positions")
        query_mask[i, :q] = True
        loss_mask[i, :q] = True
        known = prefixes[i]
        if len(known):
            gps = np.asarray(ctx.truth_xy, np.float64)[known]
            records[i, m : m + len(known), :2] = (gps - centre[i]) / cfg.scale_m
            records[i, m : m + len(known), 2] = query_t[i, known]
            records[i, m : m + len(known), 3] = EVENT_GPS
            records[i, m : m + len(known), 4] = GPS_SPREAD_M / cfg.scale_m
            record_mask[i, m : m + len(known)] = True
            prior = _prefix_prior(prior, eval_t, known, gps, dur, cfg.prefix_prior)
            loss_mask[i, known] = False
        query_prior[i, :q] = (prior - centre[i]) / cfg.scale_m
        if target is not None:
            target[i, :q] = (np.asarray(ctx.truth_xy, np.float64) - centre[i]) / cfg.scale_m
    return WindowBatch(records, record_mask, query_t, query_prior, query_mask, loss_mask, target, centre,
                       [c.sample_id for c in keep], skipped, scale_m=cfg.scale_m)


def _prefix_rows(ctx: SampleContext, prefix_s: float | None) -> np.ndarray:
    """Indices of the window's evaluation times whose GPS is given (finite truth at t <= prefix_s)."""
    if prefix_s is None:
        return np.zeros(0, dtype=np.int64)
    xy = np.asarray(ctx.truth_xy, np.float64)
    ok = (np.asarray(ctx.eval_t, np.float64) <= prefix_s + 1e-6) & np.isfinite(xy).all(axis=1)
    return np.nonzero(ok)[0]


def _prefix_prior(prior: np.ndarray, eval_t: np.ndarray, known: np.ndarray, gps: np.ndarray, duration_s: float,
                  how: str) -> np.ndarray:
    """The prior with the known times set to their GPS; the later times' as ``how`` says (``prefix_prior``)."""
    out = prior.copy()
    out[known] = gps
    t_last = eval_t[known[-1]]
    later = eval_t > t_last
    if how == "records" or not later.any():
        return out
    shift = gps[-1] - prior[known[-1]]
    fade = np.ones(int(later.sum()))
    if how == "blended":  # the shift fades to none at the window's end, where only the records say where
        fade = np.clip((duration_s - eval_t[later]) / max(duration_s - t_last, 1e-6), 0.0, 1.0)
    out[later] = prior[later] + fade[:, None] * shift[None, :]
    return out

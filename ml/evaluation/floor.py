"""Round-trip floor of the representation: render the truth, decode it, compare with the truth.

Whatever error remains after a perfect "generation" (the target video itself) is a floor that
no video model can beat at that resolution and frame count. Reported per (resolution, K,
snapped): median / p90 point error at the evaluation times (metres, projected, which equals
geodesic to < 0.1 % at city scale) and TME (``ml.metrics.route_overlap``, named in ``tme_method``).

An evaluation of the representation, so it lives with the evaluation code (it renders with
:mod:`ml.render` and decodes with :mod:`ml.decode`; neither of those imports it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable, Protocol, Sequence

import numpy as np

from ml.decode import decode_video_to_trajectory
from ml.geo.tile import Tile
from ml.metrics import fill_missing, route_overlap
from ml.render.config import RenderConfig
from ml.render.image import render_condition_image, render_target_video
from ml.geo.track import interpolate_positions

if TYPE_CHECKING:  # typing only: keeps networkx out of the training path
    from ml.cities.network import RoadNetwork


class WindowLike(Protocol):
    tile: Tile
    duration_s: float
    truth_xy: np.ndarray
    truth_t: np.ndarray
    record_xy: np.ndarray
    record_t: np.ndarray
    tower_xy: np.ndarray


TME_METHOD = "ml.metrics.route_overlap"


def _tme(pred_xy: np.ndarray, truth_xy: np.ndarray) -> float:
    """TME (%) of ``pred_xy`` against ``truth_xy`` by the shared metric (100 when nothing was decoded)."""
    if not np.isfinite(pred_xy).any():
        return 100.0
    return float(route_overlap(fill_missing(pred_xy), truth_xy)["tme_pct"])


def round_trip_floor(
    net: RoadNetwork,
    samples: Sequence[WindowLike],
    resolutions: Iterable[int] = (32, 64, 128),
    frames_list: Iterable[int] = (9, 17),
    cfg: RenderConfig | None = None,
    snap: bool = True,
    speed_weighted: bool = True,
) -> list[dict]:
    """Render and decode every window for each (resolution, K); one row per (resolution, K, snapped).

    Errors are measured at each window's truth times (the evaluation interval). Row keys:
    ``resolution, frames, snapped, median_error_m, p90_error_m, tme_pct`` (DESIGN schema) plus
    ``mean_error_m, median_error_px, metres_per_pixel, anchor_median_m, n_samples,
    n_with_issues, decode_ms, render_ms, tme_method``.
    """
    base = cfg or RenderConfig()
    rows: list[dict] = []
    for res in resolutions:
        for K in frames_list:
            c = base.model_copy(update={"resolution": int(res), "frames": int(K)})
            err = {False: [], True: []}
            err_px: list[np.ndarray] = []
            tme = {False: [], True: []}
            anchor_err, mpps = [], []
            n_issues, t_dec, t_ren = 0, 0.0, 0.0
            for s in samples:
                t = time.perf_counter()
                cond = render_condition_image(net, s.tile, res, s.record_xy, s.tower_xy, s.record_t, c)
                video = render_target_video(cond, s.tile, res, s.truth_xy, s.truth_t, s.duration_s, K, c)
                t_ren += time.perf_counter() - t
                t = time.perf_counter()
                d = decode_video_to_trajectory(video, s.tile, res, s.duration_s, net, s.truth_t, snap=snap,
                                               speed_weighted=speed_weighted)
                t_dec += time.perf_counter() - t
                n_issues += bool(d.issues)
                mpp = s.tile.metres_per_pixel(res)
                mpps.append(mpp)
                tk = d.anchors_t
                tr = interpolate_positions(s.truth_t, s.truth_xy, tk)
                anchor_err.append(np.hypot(*(d.anchors_xy - tr).T))
                for snapped, xy in ((False, d.xy_unsnapped), (True, d.xy)):
                    if snapped and not (snap and d.snapped):
                        continue
                    e = np.hypot(*(xy - s.truth_xy).T)
                    err[snapped].append(e)
                    if not snapped:
                        err_px.append(e / mpp)
                    v = _tme(xy, s.truth_xy)
                    tme[snapped].append(v)
            for snapped in (False, True):
                if not err[snapped]:
                    continue
                e = np.concatenate(err[snapped])
                e = np.where(np.isfinite(e), e, np.nan)
                rows.append({
                    "resolution": int(res), "frames": int(K), "snapped": snapped,
                    "median_error_m": float(np.nanmedian(e)), "p90_error_m": float(np.nanpercentile(e, 90)),
                    "tme_pct": float(np.nanmedian(tme[snapped])), "mean_error_m": float(np.nanmean(e)),
                    "median_error_px": float(np.nanmedian(np.concatenate(err_px))) if not snapped else None,
                    "metres_per_pixel": float(np.median(mpps)),
                    "anchor_median_m": float(np.nanmedian(np.concatenate(anchor_err))),
                    "n_samples": len(samples), "n_with_issues": int(n_issues),
                    "decode_ms": 1e3 * t_dec / max(len(samples), 1), "render_ms": 1e3 * t_ren / max(len(samples), 1),
                    "tme_method": TME_METHOD,
                })
    return rows


def oracle_time_floor(samples: Sequence[WindowLike], frames: int) -> dict:
    """Error of knowing the true route exactly and only the positions at the K frame times
    (constant speed along the true route between frames): the part of the floor due to K alone."""
    errs = []
    for s in samples:
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(s.truth_xy, axis=0).T))])
        tk = np.linspace(0.0, s.duration_s, frames)
        sk = np.interp(tk, s.truth_t, cum)
        sq = np.interp(s.truth_t, tk, sk)
        p = np.column_stack([np.interp(sq, cum, s.truth_xy[:, 0]), np.interp(sq, cum, s.truth_xy[:, 1])])
        errs.append(np.hypot(*(p - s.truth_xy).T))
    e = np.concatenate(errs)
    return {"frames": int(frames), "median_error_m": float(np.median(e)), "p90_error_m": float(np.percentile(e, 90))}

"""Next-GPS predictors: the video model continuing a drawing, and the baselines.

Every predictor answers the same question for a window (``ml.baselines.SampleContext``): given the
window's signaling records and its GPS truth at the evaluation times up to ``cfg.known_s`` (the
prefix), where is the vehicle at ``cfg.target_times()``? Each returns ``(n_horizons, 2)`` projected
metres, NaN where it has no answer. The truth after ``known_s`` is never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ml.baselines import SampleContext
from ml.nextgps.config import NextGPSConfig
from ml.nextgps.road import RoadWalker

_EPS_S = 1e-6


def known_prefix(ctx: SampleContext, cfg: NextGPSConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(t, xy)`` of the window's GPS truth at its evaluation times ``<= cfg.known_s`` (the given prefix)."""
    if ctx.truth_xy is None:
        raise ValueError(f"sample {ctx.sample_id}: next-GPS prediction needs the window's GPS prefix (truth_xy)")
    keep = ctx.eval_t <= cfg.known_s + _EPS_S
    xy = np.asarray(ctx.truth_xy, dtype=np.float64)[keep]
    ok = np.isfinite(xy).all(axis=1)
    if not ok.any():
        raise ValueError(f"sample {ctx.sample_id}: no finite GPS position in the first {cfg.known_s:g} s")
    return ctx.eval_t[keep][ok], xy[ok]


def _check_window(ctx: SampleContext, cfg: NextGPSConfig) -> None:
    if max(cfg.target_times()) > ctx.duration_s + _EPS_S:
        raise ValueError(f"next_gps: known_s + horizon = {max(cfg.target_times()):g} s exceeds the window "
                         f"({ctx.duration_s:g} s) of sample {ctx.sample_id}")


def _velocity(t: np.ndarray, xy: np.ndarray, cfg: NextGPSConfig) -> tuple[float, np.ndarray]:
    """Speed (m/s) over the prefix's last ``speed_window_s`` and the heading vector (last position minus the
    latest earlier one at least ``min_heading_m`` away; zero when standing).

    The speed is the net displacement over the time, not the path length: summed 15 s steps add the GPS
    noise to every step (1 % too fast at 3 m noise on a straight road), and on gridville's val windows
    the displacement gave the lower median error at every horizon (101 / 167 / 469 m against
    116 / 170 / 479 m at +30 / +60 / +120 s)."""
    sel = t >= t[-1] - cfg.speed_window_s - _EPS_S
    tt, pp = t[sel], xy[sel]
    dt = float(tt[-1] - tt[0])
    speed = float(np.hypot(*(pp[-1] - pp[0]))) / dt if dt > 0 else 0.0
    d = np.hypot(*(xy[-1] - xy).T)
    far = np.nonzero(d >= cfg.min_heading_m)[0]
    heading = xy[-1] - xy[far[-1]] if len(far) else np.zeros(2)
    return speed, heading


def last_position(ctx: SampleContext, cfg: NextGPSConfig) -> np.ndarray:
    """The trivial floor: the vehicle stays at its last known position."""
    _check_window(ctx, cfg)
    _, xy = known_prefix(ctx, cfg)
    return np.repeat(xy[-1:], len(cfg.horizons_s), axis=0)


def constant_velocity_road(ctx: SampleContext, cfg: NextGPSConfig, walker: RoadWalker | None = None) -> np.ndarray:
    """Constant velocity along the road: the prefix's last position and speed, advanced ``speed * (t - t_last)``
    from the map-matched heading edge (:meth:`RoadWalker.heading_edge`), straight on at junctions.

    Without a heading edge within ``snap_radius_m`` the advance is a straight line along the heading;
    a standing vehicle (no displacement of ``min_heading_m``) stays where it is.
    """
    _check_window(ctx, cfg)
    t, xy = known_prefix(ctx, cfg)
    speed, heading = _velocity(t, xy, cfg)
    ahead = speed * (np.asarray(cfg.target_times()) - t[-1])
    if speed <= 0 or not np.any(heading):
        return np.repeat(xy[-1:], len(ahead), axis=0)
    walker = walker or RoadWalker(ctx.net)
    pos = walker.heading_edge(xy[-1], heading, cfg.snap_radius_m)
    if pos is None:
        unit = heading / np.hypot(*heading)
        return xy[-1] + ahead[:, None] * unit[None, :]
    return np.stack([walker.advance(pos, float(a)) for a in ahead])


def _route_m(point_route_m: np.ndarray, obs_t: np.ndarray, query_t: np.ndarray) -> np.ndarray:
    """Distance along the route at ``query_t``, interpolated between the anchors exactly as
    ``ml.mapmatch.route.interpolate_along_route`` does (sorted, NaN dropped, monotone, held at the ends)."""
    ok = np.isfinite(point_route_m)
    t, m = obs_t[ok], point_route_m[ok]
    o = np.argsort(t, kind="stable")
    t, m = t[o], np.maximum.accumulate(m[o])
    return np.interp(query_t, t, m)


def _at_route_m(route_xy: np.ndarray, route_cum_m: np.ndarray, m: np.ndarray) -> np.ndarray:
    m = np.clip(m, 0.0, route_cum_m[-1])
    return np.column_stack([np.interp(m, route_cum_m, route_xy[:, 0]), np.interp(m, route_cum_m, route_xy[:, 1])])


def _project_on_route(route_xy: np.ndarray, route_cum_m: np.ndarray, p: np.ndarray, near_m: float) -> float:
    """Route distance of the point of the route polyline closest to ``p``; a route that passes ``p`` twice
    keeps the pass nearer ``near_m`` (a quarter metre of distance per metre along the route breaks it)."""
    a, b = route_xy[:-1], route_xy[1:]
    ab = b - a
    L2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    u = np.clip(((p - a) * ab).sum(axis=1) / L2, 0.0, 1.0)
    q = a + u[:, None] * ab
    d = np.hypot(*(q - p).T)
    m = route_cum_m[:-1] + u * np.sqrt(L2)
    return float(m[int(np.argmin(d + 0.25 * np.abs(m - near_m)))])


def industrial_hmm_joined(ctx: SampleContext, cfg: NextGPSConfig) -> tuple[np.ndarray, np.ndarray]:
    """The industrial HMM pipeline on the window's signaling, read at the target times: ``(raw, joined)``.

    ``raw`` is its reconstruction at the target times (no prefix used). ``joined`` starts on the HMM's
    route at the last known GPS position (projected onto the route) and moves along the route as far as
    the HMM itself moves between ``t_last`` and each target time. A window the HMM cannot match gives
    ``raw`` from :func:`ml.baselines.mar` (as ``industrial_hmm`` does) and ``joined`` held at the last
    known position.
    """
    from ml.baselines.signaling import IndustrialHMMConfig, industrial_hmm, window_observations
    from ml.mapmatch import match_trajectory

    _check_window(ctx, cfg)
    t, xy = known_prefix(ctx, cfg)
    q = np.asarray(cfg.target_times())
    hold = np.repeat(xy[-1:], len(q), axis=0)
    if len(ctx.records) == 0:
        return np.full((len(q), 2), np.nan), hold
    hcfg = IndustrialHMMConfig()
    obs_t, obs_xy, sigma = window_observations(ctx, hcfg)
    # the same call as ml.baselines.signaling.industrial_hmm (so ``raw`` is that method's output)
    res = match_trajectory(ctx.net, obs_xy, obs_t, sigma_m=sigma, beta_m=hcfg.beta_factor * sigma,
                           max_speed_mps=hcfg.max_speed_mps, radius_m=hcfg.radius_factor * sigma,
                           max_candidates=hcfg.max_candidates)
    if not res.matched.any() or len(res.route_xy) < 2:
        full = industrial_hmm(ctx, hcfg)
        return np.array([full[int(np.argmin(np.abs(ctx.eval_t - x)))] for x in q]), hold
    m_q = _route_m(res.point_route_m, obs_t, q)
    m_last = float(_route_m(res.point_route_m, obs_t, np.array([t[-1]]))[0])
    raw = _at_route_m(res.route_xy, res.route_cum_m, m_q)
    m0 = _project_on_route(res.route_xy, res.route_cum_m, xy[-1], m_last)
    joined = _at_route_m(res.route_xy, res.route_cum_m, m0 + (m_q - m_last))
    return raw, joined


def _target_rows(ctx: SampleContext, cfg: NextGPSConfig) -> np.ndarray:
    """Indices of ``ctx.eval_t`` at the target times (each must be an evaluation time)."""
    rows = []
    for x in cfg.target_times():
        i = int(np.argmin(np.abs(ctx.eval_t - x)))
        if abs(ctx.eval_t[i] - x) > 1e-3:
            raise ValueError(f"next_gps: target time {x:g} s is not an evaluation time of sample {ctx.sample_id} "
                             f"(truth every {np.median(np.diff(ctx.eval_t)):g} s); choose known_s and horizons on it")
        rows.append(i)
    return np.array(rows)


def prefix_only(ctx: SampleContext, cfg: NextGPSConfig) -> SampleContext:
    """``ctx`` with its GPS truth after ``cfg.known_s`` blanked (NaN): what a predictor given the prefix may read."""
    from dataclasses import replace

    if ctx.truth_xy is None:
        raise ValueError(f"sample {ctx.sample_id}: next-GPS prediction needs the window's GPS prefix (truth_xy)")
    xy = np.array(ctx.truth_xy, dtype=np.float64)
    xy[np.asarray(ctx.eval_t) > cfg.known_s + _EPS_S] = np.nan
    return replace(ctx, truth_xy=xy)


def seq2seq_at_targets(checkpoint: Path, contexts: Sequence[SampleContext], cfg: NextGPSConfig,
                       device: str = "cpu") -> dict[str, np.ndarray]:
    """A seq2seq model's positions of each window (``ml.evaluation.predict_seq2seq_method``, snapped) read at the
    target times. A reconstruction checkpoint (``prefix_s`` None) sees the signaling only; a next-GPS one
    (``prefix_s`` = ``cfg.known_s``, the ``seq2seq_prefix_checkpoint`` asset) also reads the known GPS as tokens,
    from windows whose truth after ``known_s`` is blanked (:func:`prefix_only`)."""
    from ml.evaluation import predict_seq2seq_method
    from ml.seq2seq import load_seq2seq

    _, s2s = load_seq2seq(checkpoint)
    if s2s.prefix_s is not None:
        if abs(s2s.prefix_s - cfg.known_s) > _EPS_S:
            raise ValueError(f"{checkpoint}: trained with a {s2s.prefix_s:g} s GPS prefix; next_gps.known_s is "
                             f"{cfg.known_s:g} s (train it again with prefix_s = known_s)")
        contexts = [prefix_only(c, cfg) for c in contexts]
    run = predict_seq2seq_method(checkpoint, contexts, device=device, gps_prefix=s2s.prefix_s is not None)
    return {c.sample_id: np.asarray(run.predictions[c.sample_id], dtype=np.float64)[_target_rows(c, cfg)]
            for c in contexts}


def known_frame_count(frames: int, duration_s: float, known_s: float) -> int:
    """Frames of a ``frames``-frame video over ``duration_s`` whose time is ``<= known_s`` (the frames a
    continuation holds; ``SFTConfig.known_frames`` of a continuation model)."""
    frame_t = np.arange(frames) * float(duration_s) / (frames - 1)
    return int((frame_t <= known_s + _EPS_S).sum())


def continuation_sample(model, cond_image, known, n_known: int, n_steps: int, noise=None, generator=None,
                        tokens=None, token_mask=None, noise_scale: float = 0.0, shift: float = 1.0,
                        clean_prefix: bool = False):
    """Inpainting-style continuation with the Euler ODE sampler (``ml.models.sampling.euler_sample``'s steps).

    ``known`` (B, C, K, h, w) is the model-space target of the known frames (only its first ``n_known``
    frames are read). The flow starts at ``x_1 = model.source_sample(cond, noise_scale * noise)``; before
    each model call and after the last step, the first ``n_known`` frames of the state are replaced by the
    known frames noised to the current level, ``(1 - s) known + s x_1`` (the same straight path the model
    was trained on), so the model draws the later frames next to a prefix at its own noise level, and at
    s = 0 the known frames are exactly ``known``. With ``clean_prefix`` the known frames are ``known`` itself at
    every model call, what a model trained with ``SFTConfig.known_frames`` saw (the continuation checkpoint).
    ``n_known = 0`` is plain sampling. Returns the final model-space state and the encoded condition.
    """
    import torch

    from ml.models.flow_matching import timestep_grid

    if getattr(model, "latent", False):
        raise ValueError("continuation_sample: a latent (VAE) model compresses frames in time, so its frames "
                         "cannot be fixed one by one; use a pixel-space model (target 'layer' or 'rgb')")
    B = cond_image.shape[0]
    C, k, h, w = model.latent_shape(known.shape[2], cond_image.shape[-1])
    if not 0 <= n_known <= k:
        raise ValueError(f"continuation_sample: n_known = {n_known} outside 0..{k} frames")
    if noise is None:
        gdev = generator.device if generator is not None else cond_image.device
        noise = torch.randn((B, C, k, h, w), generator=generator, device=gdev)
    noise = noise.to(device=cond_image.device, dtype=torch.float32) * float(noise_scale)
    cond = model.encode_condition(cond_image, tokens, token_mask, frames=k)
    x1 = model.source_sample(cond, noise)
    known = known.to(device=cond_image.device, dtype=torch.float32)

    def fix(x, s):
        if n_known:
            x = x.clone()
            x[:, :, :n_known] = known[:, :, :n_known] if clean_prefix else \
                (1.0 - s) * known[:, :, :n_known] + s * x1[:, :, :n_known]
        return x

    grid = timestep_grid(n_steps, shift, device=cond_image.device)
    x = fix(x1, grid[0])
    with torch.no_grad():
        for i in range(n_steps):
            s, s_next = grid[i], grid[i + 1]
            v = model(x, s.expand(B), cond_image, tokens, token_mask, cond=cond)
            x = fix(x + (s_next - s) * v.float(), s_next)
    return x, cond


def video_at_targets(checkpoint: Path, rendered_dir: Path, contexts: Sequence[SampleContext], cfg: NextGPSConfig,
                     n_steps: int, with_prefix: bool = True, device: str = "cpu",
                     progress: Callable[[str], None] | None = None, clean_prefix: bool = False) -> dict[str, np.ndarray]:
    """The video model's next-GPS prediction: the drawing continued from the known frames
    (:func:`continuation_sample`; frames at times ``<= known_s`` fixed to the rendered truth of the prefix),
    decoded to GPS (``ml.decode.decode_video_to_trajectory``, as the evaluation decodes) and read at the
    target times. ``with_prefix=False`` samples without fixing any frame (the reconstruction, an ablation);
    ``clean_prefix`` holds the known frames clean at every step (for the continuation checkpoint). Windows
    missing from the rendered arrays get NaN.
    """
    import torch

    from ml.inference import SamplingSettings, predict_windows, rendered_window
    from ml.models import load_video_model
    from ml.models.data import to_uint8_frames, video_to_tensor
    from ml.models.layer import layer_from_video
    from ml.models.sampling import layer_to_uint8
    from ml.render.arrays import RenderedArrays

    model, _ = load_video_model(checkpoint, device=device)
    model.eval()
    arrays = RenderedArrays(rendered_dir)
    row_of = {sid: i for i, sid in enumerate(arrays.index["sample_id"].astype(str))}
    out: dict[str, np.ndarray] = {}
    windows, by_key = [], {}
    for c in contexts:
        _check_window(c, cfg)
        if c.sample_id not in row_of:
            out[c.sample_id] = np.full((len(cfg.horizons_s), 2), np.nan)
            continue
        r = row_of[c.sample_id]
        windows.append(rendered_window(arrays, r, c.sample_id, c.eval_t, c.net,
                                       model.cfg.max_records if model.cfg.uses_records else None))
        by_key[c.sample_id] = (r, c)

    def continue_known(m, cond, tokens, mask, noise, batch):
        rows = np.array([by_key[w.key][0] for w in batch])
        n_known = known_frame_count(arrays.frames, arrays.duration_s(int(rows[0])), cfg.known_s) if with_prefix else 0
        truth = video_to_tensor(arrays.batch(rows)[1])
        # the known frames in the model's own space: the drawing layer the SFT target is made of, or the RGB video
        known = truth if m.cfg.target == "rgb" else layer_from_video(truth)
        x, c_enc = continuation_sample(m, cond, known, n_known, n_steps, noise=noise, tokens=tokens, token_mask=mask,
                                       noise_scale=cfg.video_noise_scale, clean_prefix=clean_prefix)
        with torch.no_grad():
            frames = to_uint8_frames(m.decode_video(x, c_enc))
        return frames, (layer_to_uint8(x) if m.cfg.target == "layer" else None)

    mode = "no prefix" if not with_prefix else "clean prefix" if clean_prefix else "continuation"
    settings = SamplingSettings(n_steps, cfg.video_noise_scale, seed=cfg.video_seed, batch_size=cfg.video_batch_size)
    for batch in predict_windows(model, windows, settings, device=device, sampler=continue_known,
                                 frames=arrays.frames, progress=progress, label=f"video ({mode}, {n_steps} steps)"):
        for pred in batch.predictions:
            out[pred.key] = pred.xy[_target_rows(by_key[pred.key][1], cfg)]
    return out

"""MLflow pyfunc of the video model: signaling records in, GPS trajectory out.

Input DataFrame, one row per signaling record: ``ts`` (datetime or ISO string, UTC), ``cell_id``
(int, must be in the packaged towers) and a request id column (``sample_id``, ``request_id`` or
``device_id``, the first present; without one all rows form one request). Optional per request:
``t0`` (window start; default the first record's time). Each request is one window of the
duration the model was trained for (``duration_s``, frames map to fixed times).

Output DataFrame: the id column, ``ts``, ``lon``, ``lat`` at ``eval_interval_s`` from t0 to
t0 + duration_s, plus ``method`` ("video", or "fallback_mar" where the generated video could
not be decoded: the serving-tower positions interpolated in time) .

Pipeline per request: ``ml.geo.choose_tile`` on the serving-tower positions, the condition image
by ``ml.render.render_condition_image``, then ``ml.inference.predict_windows``, the evaluation's loop: a batched
Euler sample of the flow model (the noise of the batch starting at window b seeded with ``seed + b``) decoded by
``ml.decode.decode_video_to_trajectory`` (snapped to the road network, reading the request's records beside the
drawing).

Artifacts: ``checkpoint`` (``save_video_model`` file), ``towers`` (parquet: cell_id, lon, lat),
``roads`` (``RoadNetwork.save_npz``), ``serving_config`` (JSON: city, crs, duration_s,
eval_interval_s, n_steps, noise_scale, shift, seed, record_evidence_weight, render config, footprint settings)
and, when the model was trained on them, ``footprints`` (the city's ``cell_footprints``: records are placed for the
tokens as the renderer placed them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlflow.pyfunc import PythonModel

from ml.geo.track import interpolate_positions


ID_COLUMNS = ("sample_id", "request_id", "device_id")


def id_column(df: pd.DataFrame) -> str | None:
    """The request id column of an input frame (first of ``ID_COLUMNS`` present), or None."""
    return next((c for c in ID_COLUMNS if c in df.columns), None)


class TrajectoryReconstructor:
    """The reconstruction pipeline with its loaded parts (model, network, towers); used by the pyfunc."""

    def __init__(self, checkpoint: str | Path, towers: pd.DataFrame, net: Any, serving_config: dict[str, Any],
                 device: str | None = None, footprints: pd.DataFrame | None = None) -> None:
        import torch

        from ml.observation.context import TowerTable
        from ml.geo import CityProjection
        from ml.models.checkpoint import load_video_model
        from ml.render.config import RenderConfig

        self.cfg = dict(serving_config)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.model_cfg = load_video_model(checkpoint, device=self.device)
        self.net = net
        self.crs = str(self.cfg.get("crs") or net.crs)
        self.proj = CityProjection(self.crs)
        miss = [c for c in ("cell_id", "site_id", "lon", "lat") if c not in towers.columns]
        if miss:
            raise ValueError(f"towers artifact: missing column(s) {miss} (rule: the data contract's towers table)")
        self.cell_ids = pd.Index(towers["cell_id"].astype(np.int64).to_numpy())
        self.tower_xy = self.proj.to_xy(towers["lon"].to_numpy(float), towers["lat"].to_numpy(float))
        self.tower_table = TowerTable(towers, self.crs)
        # records are placed for the tokens exactly as the renderer placed them for training: the city's
        # footprints when the model was registered with them, else the hand-made model
        from ml.observation import FootprintConfig, HandmadeObservationModel, LearnedObservationModel

        self.observation = (HandmadeObservationModel(self.tower_table) if footprints is None else
                            LearnedObservationModel(footprints, self.tower_table,
                                                    FootprintConfig(**(self.cfg.get("footprints") or {}))))
        rc = dict(self.cfg.get("render") or {})
        # registrations from before RenderConfig.trace drew the polyline through the serving towers
        rc.setdefault("trace", "serving_towers")
        rc.update(resolution=self.model_cfg.resolution, frames=self.model_cfg.frames)
        self.render_cfg = RenderConfig.model_validate(rc)
        self.duration_s = float(self.cfg["duration_s"])
        self.eval_t = np.arange(0.0, self.duration_s + 1e-9, float(self.cfg.get("eval_interval_s", 30.0)))

    def _cond_images(self, groups: list[tuple[Any, pd.DataFrame]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
        """Condition images (B, H, W, 3), record tokens (B, R, 4) + mask (B, R), tiles and per-request info."""
        from ml.geo import choose_tile
        from ml.observation import left_cells
        from ml.models.tokens import records_to_array
        from ml.render import render_condition_image

        R = self.model_cfg.resolution
        conds, toks, masks, tiles, metas = [], [], [], [], []
        for key, g in groups:
            pos = self.cell_ids.get_indexer(g["cell_id"].astype(np.int64).to_numpy())
            if (pos < 0).any():
                bad = g["cell_id"].to_numpy()[pos < 0][:5].tolist()
                raise ValueError(f"input column 'cell_id': values {bad} of request '{key}' are not in the city's towers")
            ts = pd.to_datetime(g["ts"], utc=True)
            order = np.argsort(ts.to_numpy(), kind="stable")
            ts = ts.iloc[order]
            rxy = self.tower_xy[pos[order]]
            cells = g["cell_id"].astype(np.int64).to_numpy()[order]
            t0 = pd.to_datetime(g["t0"].iloc[0], utc=True) if "t0" in g.columns else ts.iloc[0]
            rt = (ts - t0).dt.total_seconds().to_numpy()
            keep = (rt >= -1e-6) & (rt <= self.duration_s + 1e-6)
            rxy_w, rt_w = (rxy[keep], rt[keep]) if keep.any() else (rxy, rt)
            events = g["event"].astype(str).to_numpy()[order] if "event" in g.columns else np.full(len(g), "")
            ev_w = events[keep] if keep.any() else events
            cells_w = cells[keep] if keep.any() else cells
            obs_w = self.observation.positions(cells_w, left_cells(cells_w, ev_w))
            tile = choose_tile(rxy_w, self.crs, self.render_cfg.zoom_sizes_m, self.render_cfg.margin_m)
            towers = np.unique(rxy_w, axis=0) if self.render_cfg.towers == "serving" else \
                self.tower_xy[tile.contains(self.tower_xy)]
            conds.append(render_condition_image(self.net, tile, R, self.render_cfg.trace_xy(rxy_w, obs_w), towers, rt_w,
                                                self.render_cfg))
            # the same token format as the renderer's (ml.render.dataset.sample_tokens)
            tok, mask = records_to_array(tile.xy_to_pixel(obs_w, R) / R, np.clip(rt_w / self.duration_s, 0.0, 1.0),
                                         ev_w, self.model_cfg.max_records)
            toks.append(tok)
            masks.append(mask)
            tiles.append(tile)
            metas.append((key, t0, rxy_w, rt_w, cells_w, ev_w))
        return np.stack(conds), np.stack(toks), np.stack(masks), tiles, metas

    def _evidence(self, record_t: np.ndarray, cells: np.ndarray, events: np.ndarray) -> Any:
        """The records' evidence for the snapping, at the weight the model was registered with (older
        registrations carry none: the drawing alone, as they were evaluated)."""
        from ml.observation.evidence import record_evidence

        weight = float(self.cfg.get("record_evidence_weight", 0.0))
        return record_evidence(record_t, cells, events, self.observation, weight) if weight > 0 else None

    def reconstruct(self, df: pd.DataFrame) -> pd.DataFrame:
        """Records of one or more requests -> trajectories (see the module docstring)."""
        from ml.inference import SamplingSettings, VideoWindow, predict_windows

        miss = [c for c in ("ts", "cell_id") if c not in df.columns]
        if miss:
            raise ValueError(f"input: missing column(s) {miss} (need ts, cell_id and a request id column)")
        idc = id_column(df)
        df = df.copy()
        if idc is None:
            idc = "sample_id"
            df[idc] = "0"
        groups = [(k, g) for k, g in df.groupby(idc, sort=False)]
        if not groups:
            return pd.DataFrame(columns=[idc, "ts", "lon", "lat", "method"])
        conds, toks, masks, tiles, metas = self._cond_images(groups)
        windows = [VideoWindow(str(key), cond, tile, self.duration_s, self.eval_t, self.net, tok, mask,
                               self._evidence(rt, cells, events))
                   for cond, tok, mask, tile, (key, t0, rxy, rt, cells, events) in zip(conds, toks, masks, tiles, metas)]
        settings = SamplingSettings(int(self.cfg.get("n_steps", 20)), float(self.cfg.get("noise_scale", 1.0)),
                                    float(self.cfg.get("shift", 1.0)), int(self.cfg.get("seed", 0)),
                                    int(self.cfg.get("batch_size", 16)))
        predictions = [p for batch in predict_windows(self.model, windows, settings, device=self.device)
                       for p in batch.predictions]
        out = []
        for pred, (key, t0, rxy, rt, cells, events) in zip(predictions, metas):
            method, xy = "video", pred.xy.copy()
            # a poor sample decodes to NaN positions (filled below, and labelled); an exception is a bug and is raised
            if not np.isfinite(xy).all():
                method = "fallback_mar"
                fb = interpolate_positions(rt, rxy, self.eval_t, "request records")
                bad = ~np.isfinite(xy).all(axis=1)
                xy[bad] = fb[bad]
            lonlat = self.proj.to_lonlat(xy)
            out.append(pd.DataFrame({idc: key, "ts": t0 + pd.to_timedelta(self.eval_t, unit="s"),
                                     "lon": lonlat[:, 0], "lat": lonlat[:, 1], "method": method}))
        return pd.concat(out, ignore_index=True)


class ReconstructorModel(PythonModel):
    """A pyfunc whose ``load_context`` sets ``self._impl`` (anything with ``reconstruct(df) -> df``): records in,
    trajectories out, timestamps as strings for the REST server."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        res = self._impl.reconstruct(model_input)
        res["ts"] = res["ts"].astype(str)  # JSON-safe for the REST server
        return res


class VideoTrajectoryModel(ReconstructorModel):
    """``mlflow.pyfunc`` wrapper of ``TrajectoryReconstructor`` (artifacts listed in the module docstring)."""

    def load_context(self, context: Any) -> None:
        from ml.cities.network import RoadNetwork

        art = context.artifacts
        cfg = json.loads(Path(art["serving_config"]).read_text())
        towers = pd.read_parquet(art["towers"])
        net = RoadNetwork.load_npz(art["roads"])
        footprints = pd.read_parquet(art["footprints"]) if "footprints" in art else None
        self._impl = TrajectoryReconstructor(art["checkpoint"], towers, net, cfg, footprints=footprints)

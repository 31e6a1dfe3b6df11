"""MLflow pyfunc of ``learned_hmm``: signaling records in, GPS trajectory out, read through the city's footprints.

Same request and response as the video pyfunc (``ml.serving.pyfunc``): one row per record with ``ts``,
``cell_id``, optional ``event`` and a request id column; out the id column, ``ts``, ``lon``, ``lat``
at ``eval_interval_s`` over the window and ``method`` (``learned_hmm``; a window the HMM cannot match
is an error row with NaN positions, counted by the caller, never filled with another method).

Artifacts: ``towers`` (parquet), ``roads`` (``RoadNetwork.save_npz``), ``footprints`` (the
``cell_footprints`` table) and ``serving_config`` (JSON: city, duration_s, eval_interval_s, the
footprint settings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ml.serving.pyfunc import ReconstructorModel, id_column


class HMMReconstructor:
    """``learned_hmm`` with its loaded parts (network, towers, footprints); used by the pyfunc."""

    def __init__(self, towers: pd.DataFrame, net: Any, footprints: pd.DataFrame, serving_config: dict[str, Any]) -> None:
        from ml.geo import CityProjection
        from ml.observation import FootprintConfig, LearnedObservationModel, TowerTable

        self.cfg = dict(serving_config)
        self.net = net
        self.towers = towers
        self.duration_s = float(self.cfg["duration_s"])
        self.eval_interval_s = float(self.cfg["eval_interval_s"])
        self.model = LearnedObservationModel(footprints, TowerTable(towers, net.crs),
                                             FootprintConfig(**self.cfg.get("footprints", {})))
        self.proj = CityProjection(net.crs)

    def reconstruct(self, df: pd.DataFrame) -> pd.DataFrame:
        """Records of one or more requests -> trajectories (see the module docstring)."""
        from ml.baselines import learned_hmm
        from ml.evaluation.methods import run_method
        from ml.observation import build_sample_contexts

        miss = [c for c in ("ts", "cell_id") if c not in df.columns]
        if miss:
            raise ValueError(f"input: missing column(s) {miss} (need ts, cell_id and a request id column)")
        idc = id_column(df) or "sample_id"
        df = df.assign(**({idc: "0"} if idc not in df.columns else {}), ts=pd.to_datetime(df["ts"], utc=True))
        if df.empty:
            return pd.DataFrame(columns=[idc, "ts", "lon", "lat", "method", "error"])
        key = df[idc].astype(str)
        t0 = df.groupby(key)["ts"].min() if "t0" not in df.columns else pd.to_datetime(df.groupby(key)["t0"].first(), utc=True)
        samples = pd.DataFrame({"sample_id": t0.index, "device_id": t0.index, "t0": t0.to_numpy(),
                                "t1": (t0 + pd.Timedelta(seconds=self.duration_s)).to_numpy()})
        sig = pd.DataFrame({"device_id": key.to_numpy(), "ts": df["ts"].to_numpy(),
                            "cell_id": df["cell_id"].astype(np.int64).to_numpy(),
                            "event": df["event"].astype(str).to_numpy() if "event" in df.columns else ""})
        ctxs = build_sample_contexts(samples, sig, self.towers, self.net, eval_interval_s=self.eval_interval_s,
                                     observation=self.model)
        run = run_method("learned_hmm", "signaling", learned_hmm, ctxs)
        out = []
        for ctx in ctxs:
            xy = run.predictions[ctx.sample_id]
            lonlat = np.full_like(xy, np.nan)
            ok = np.isfinite(xy).all(axis=1)
            lonlat[ok] = self.proj.to_lonlat(xy[ok])
            out.append(pd.DataFrame({idc: ctx.sample_id, "ts": ctx.t0 + pd.to_timedelta(ctx.eval_t, unit="s"),
                                     "lon": lonlat[:, 0], "lat": lonlat[:, 1], "method": "learned_hmm",
                                     "error": run.failures.get(ctx.sample_id, "")}))
        return pd.concat(out, ignore_index=True)


class LearnedHMMModel(ReconstructorModel):
    """``mlflow.pyfunc`` wrapper of :class:`HMMReconstructor` (artifacts listed in the module docstring)."""

    def load_context(self, context: Any) -> None:
        from ml.cities.network import RoadNetwork

        art = context.artifacts
        self._impl = HMMReconstructor(pd.read_parquet(art["towers"]), RoadNetwork.load_npz(art["roads"]),
                                      pd.read_parquet(art["footprints"]),
                                      json.loads(Path(art["serving_config"]).read_text()))

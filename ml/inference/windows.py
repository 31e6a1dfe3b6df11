"""``predict_windows``: the one generate-and-decode loop of the video model.

Evaluation (``ml.evaluation.video``), next-GPS (``ml.nextgps.predict``), serving and batch reconstruction
(``ml.serving.pyfunc.TrajectoryReconstructor``, which ``ml.batch`` actors run) and SFT validation
(``ml.train.sft.module``) all reconstruct windows here: they differ only in how they build a
:class:`VideoWindow` (from rendered arrays, from request records, from a training batch) and, for next-GPS, in
the sampler (a continuation). Batching, seeding, tokens, generation, decoding, failure labels and latency are
done once:

- a batch of windows ``[b, b + batch_size)`` draws its initial noise on the CPU from ``seed + b``, so a window's
  sample depends on its position in the list and the settings, not on the device or on what else runs;
- a window's latency is its share of its batch's generation time plus its own decoding time;
- a window whose decoded trajectory has no finite position is a failure, labelled with the decoder's issues.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ml.cities.network import RoadNetwork
    from ml.geo import Tile
    from ml.observation.evidence import RecordEvidence


@dataclass(frozen=True)
class SamplingSettings:
    """How windows are sampled: Euler steps, initial-noise scale (0: the deterministic posterior-mean path the
    evaluation uses), time shift, the seed of the first batch and the batch size."""

    n_steps: int
    noise_scale: float = 0.0
    shift: float = 1.0
    seed: int = 0
    batch_size: int = 16


@dataclass
class VideoWindow:
    """One window to reconstruct: what the model reads (condition image, record tokens) and what the decoder
    needs (tile, duration, evaluation times, road network, the records' evidence). ``net`` None: generate only."""

    key: str
    cond: np.ndarray  # (H, W, 3) uint8 condition image
    tile: "Tile"
    duration_s: float
    eval_t: np.ndarray
    net: "RoadNetwork | None"
    tokens: np.ndarray | None = None  # (R, C) record tokens, for a model that reads them
    token_mask: np.ndarray | None = None  # (R,) which tokens are records
    evidence: "RecordEvidence | None" = None  # read by the snapping beside the drawing


def rendered_window(arrays: Any, row: int, key: str, eval_t: np.ndarray, net: "RoadNetwork | None",
                    max_records: int | None, evidence: "RecordEvidence | None" = None) -> VideoWindow:
    """Row ``row`` of a rendered-arrays folder (``ml.render.arrays.RenderedArrays``) as a :class:`VideoWindow`:
    its condition image, tile and duration, and its record tokens when ``max_records`` is given (a model that
    reads them)."""
    from ml.models.data import record_tokens

    tokens, mask = record_tokens(arrays, row, max_records) if max_records else (None, None)
    return VideoWindow(key, arrays.cond(row), arrays.tile(row), arrays.duration_s(row), eval_t, net, tokens, mask,
                       evidence)


@dataclass
class WindowPrediction:
    """A decoded window: positions at its ``eval_t`` (NaN where nothing was decoded), the decoder's issues, the
    failure label (None when some position was decoded) and the latency (ms)."""

    key: str
    xy: np.ndarray
    issues: list[str] = field(default_factory=list)
    failure: str | None = None
    latency_ms: float = float("nan")


@dataclass
class PredictedBatch:
    """One batch of :func:`predict_windows`: its windows (``start``: index of the first in the input), the
    generated videos (B, K, H, W, 3) uint8, the drawing layers (B, K, H, W, 2) or None, and the predictions
    (empty when not decoding)."""

    start: int
    windows: list[VideoWindow]
    video: np.ndarray
    layer: np.ndarray | None
    predictions: list[WindowPrediction]


#: ``sampler(model, cond, tokens, token_mask, noise, windows) -> (video uint8, layer uint8 or None)``: how a batch
#: is generated from its initial noise (default: :func:`ml.models.sampling.generate` with the settings)
Sampler = Callable[[Any, "torch.Tensor", "torch.Tensor | None", "torch.Tensor | None", "torch.Tensor",
                    list[VideoWindow]], tuple[np.ndarray, np.ndarray | None]]


def _stack_tokens(batch: list[VideoWindow], needed: bool, device: Any) -> tuple[Any, Any]:
    import torch

    if not needed:
        return None, None
    missing = [w.key for w in batch if w.tokens is None or w.token_mask is None]
    if missing:
        raise ValueError(f"windows {missing[:5]}: the model reads record tokens and these windows have none")
    return (torch.from_numpy(np.stack([w.tokens for w in batch])).to(device),
            torch.from_numpy(np.stack([w.token_mask for w in batch])).to(device))


def predict_windows(model: Any, windows: Sequence[VideoWindow], settings: SamplingSettings, device: str = "cpu",
                    sampler: Sampler | None = None, decode: bool = True, frames: int | None = None,
                    progress: Callable[[str], None] | None = None, label: str = "video") -> Iterator[PredictedBatch]:
    """Generate and decode ``windows`` in batches (see the module docstring); yields one :class:`PredictedBatch`
    per batch, in order. ``frames``: the video length to generate (default the model's). ``decode=False`` only
    generates (validation without a road network). ``progress`` receives one text progress bar line per batch."""
    import torch

    from ml.models.data import cond_to_tensor
    from ml.models.sampling import generate

    if decode:  # the decoder needs the road-network stack (networkx, pyproj); generating alone does not
        from ml.decode import decode_video_to_trajectory

    if sampler is None:
        def sampler(m: Any, cond: Any, tokens: Any, mask: Any, noise: Any, _: list[VideoWindow]) -> tuple:
            return generate(m, cond, settings.n_steps, tokens=tokens, token_mask=mask, noise=noise,
                            shift=settings.shift, noise_scale=settings.noise_scale)

    uses_records = bool(getattr(model.cfg, "uses_records", False))
    bs = max(1, int(settings.batch_size))
    started = time.perf_counter()
    for b in range(0, len(windows), bs):
        batch = list(windows[b : b + bs])
        cond = cond_to_tensor(np.stack([w.cond for w in batch])).to(device)
        tokens, mask = _stack_tokens(batch, uses_records, device)
        gen = torch.Generator(device="cpu").manual_seed(int(settings.seed) + b)
        noise = torch.randn((len(batch), *model.latent_shape(frames, cond.shape[-1])), generator=gen)
        t0 = time.perf_counter()
        video, layer = sampler(model, cond, tokens, mask, noise.to(device), batch)
        share_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
        predictions = []
        if decode:
            for j, w in enumerate(batch):
                t1 = time.perf_counter()
                dec = decode_video_to_trajectory(video[j], w.tile, int(video.shape[-2]), w.duration_s, w.net, w.eval_t,
                                                 layer=None if layer is None else layer[j], evidence=w.evidence)
                xy = np.asarray(dec.xy, dtype=np.float64).reshape(len(w.eval_t), 2)
                failure = None if np.isfinite(xy).any() else ("; ".join(dec.issues) or "nothing decoded")
                predictions.append(WindowPrediction(w.key, xy, list(dec.issues), failure,
                                                    share_ms + (time.perf_counter() - t1) * 1e3))
        yield PredictedBatch(b, batch, video, layer, predictions)
        if progress:  # a text progress bar, one line per batch (the Dagster console shows it as it goes)
            from tqdm import tqdm

            progress(f"{label}: " + tqdm.format_meter(min(b + bs, len(windows)), len(windows),
                                                      time.perf_counter() - started, ncols=80, unit="window"))

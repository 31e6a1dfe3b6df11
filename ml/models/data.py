"""Training data: the rendered arrays of ``ml.render`` as a torch Dataset and a Lightning DataModule.

File format (``docs/architecture.md``, "Rendered arrays"): ``index.parquet`` (sample_id, split,
shard, row, tile_crs, tile_x0, tile_y0, tile_size_m, resolution, frames, duration_s),
``cond_<shard:04d>.npy`` uint8 (n, H, W, 3) and ``video_<shard:04d>.npy`` uint8 (n, K, H, W, 3),
memory-mapped. Optional for the signaling-token ablation: ``tokens_<shard:04d>.npy`` float32
(n, R, 4) in the ``ml.models.tokens`` format, rows with NaN in column 0 being padding (written by
``ml.render.dataset.render_samples``; a window with more than ``max_records`` valid rows is subsampled
evenly in time, as the renderer does).
Models see float32 in [-1, 1], channels first: cond (3, H, W), video (3, K, H, W).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ml.pixels import to_model_space, to_uint8


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Model video (3, K, H, W) or (B, 3, K, H, W) in [-1, 1] -> uint8 (K, H, W, 3) or (B, K, H, W, 3)."""
    v = to_uint8(video).movedim(-4, -1)
    return v.cpu().numpy()


def cond_to_tensor(cond: np.ndarray) -> torch.Tensor:
    """uint8 condition image(s) (H, W, 3) or (B, H, W, 3) -> float (3, H, W) or (B, 3, H, W) in [-1, 1]."""
    t = to_model_space(torch.from_numpy(np.ascontiguousarray(cond)))
    return t.movedim(-1, -3)


def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """uint8 video(s) (K, H, W, 3) or (B, K, H, W, 3) -> float (3, K, H, W) or (B, 3, K, H, W) in [-1, 1]."""
    t = to_model_space(torch.from_numpy(np.ascontiguousarray(video)))
    return t.movedim(-1, -4)


def record_tokens(reader: "RenderedArrays", i: int, max_records: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``i``'s signaling tokens padded/cut to ``max_records``: ((R, 4) float32, (R,) bool mask).

    The one way training, evaluation and GDPO read the records of a rendered window (serving builds
    the same arrays from raw records with ``ml.models.tokens.records_to_array``).
    """
    from ml.render.arrays import subsample_evenly

    tok = reader.tokens(i)
    if tok is None:
        raise FileNotFoundError(
            f"{reader.path}: the model reads the signaling records (model.signal_prior or model.signaling_tokens) "
            "but tokens_<shard>.npy files are absent (re-render the arrays)")
    tok = tok[~np.isnan(tok[:, 0])]
    tok = np.nan_to_num(tok[subsample_evenly(len(tok), max_records)])
    out = np.zeros((max_records, 4), np.float32)
    mask = np.zeros(max_records, bool)
    out[: len(tok)] = tok
    mask[: len(tok)] = True
    return out, mask


def _open_reader(root: str | Path) -> "RenderedArrays":
    from ml.render.arrays import RenderedArrays

    return RenderedArrays(root)


class RenderedVideoDataset(Dataset):
    """Samples of some rows of a rendered-arrays folder as dicts of tensors.

    Item: ``video`` (3, K, H, W), ``cond`` (3, H, W) float32 in [-1, 1], ``index`` (row in index.parquet),
    and with ``with_tokens`` ``tokens`` (R, 4) + ``token_mask`` (R,) (padded/cut to ``max_records``).
    """

    def __init__(self, root: str | Path, rows: np.ndarray | None = None, with_tokens: bool = False,
                 max_records: int = 64) -> None:
        self.root = Path(root)
        self.reader = _open_reader(root)
        self.rows = np.arange(len(self.reader)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.with_tokens = with_tokens
        self.max_records = max_records

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> dict[str, Any]:
        i = int(self.rows[j])
        item: dict[str, Any] = {
            "video": video_to_tensor(np.array(self.reader.video(i))),
            "cond": cond_to_tensor(np.array(self.reader.cond(i))),
            "index": i,
        }
        if self.with_tokens:
            tok, mask = record_tokens(self.reader, i, self.max_records)
            item["tokens"] = torch.from_numpy(tok)
            item["token_mask"] = torch.from_numpy(mask)
        return item


def split_rows(index, val_fraction: float = 0.1, seed: int = 0) -> dict[str, np.ndarray]:
    """Row numbers per split from ``index.split``; without 'val' rows, hold out ``val_fraction`` of train."""
    split = index["split"].astype(str).to_numpy()
    rows = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    if len(rows["val"]) == 0 and val_fraction > 0 and len(rows["train"]) > 1:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(rows["train"])
        n_val = max(1, int(round(val_fraction * len(perm))))
        rows["val"] = np.sort(perm[:n_val])
        rows["train"] = np.sort(perm[n_val:])
    return rows


class RenderedVideoDataModule(L.LightningDataModule):
    """Train/val/test loaders over a rendered-arrays folder, splits from ``index.parquet``."""

    def __init__(self, rendered_dir: str | Path, batch_size: int = 8, num_workers: int = 0,
                 val_fraction: float = 0.1, seed: int = 0, with_tokens: bool = False, max_records: int = 64,
                 val_batch_size: int | None = None) -> None:
        super().__init__()
        self.rendered_dir = Path(rendered_dir)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.with_tokens = with_tokens
        self.max_records = max_records
        self.rows: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.rows:
            return
        reader = _open_reader(self.rendered_dir)
        self.resolution, self.frames = reader.resolution, reader.frames
        self.index = reader.index
        self.rows = split_rows(reader.index, self.val_fraction, self.seed)
        if len(self.rows["train"]) == 0:
            raise ValueError(f"{self.rendered_dir}/index.parquet has no 'train' rows")

    def index_record(self, i: int) -> dict[str, Any]:
        """Row ``i`` of ``index.parquet`` (tile georeference, duration) as a dict."""
        return self.index.iloc[int(i)].to_dict()

    def _ds(self, split: str) -> RenderedVideoDataset:
        return RenderedVideoDataset(self.rendered_dir, self.rows[split], self.with_tokens, self.max_records)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self._ds(split), batch_size=batch_size, shuffle=shuffle, drop_last=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=g if shuffle else None, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False, self.val_batch_size) if len(self.rows.get("val", [])) else []

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", False, self.val_batch_size) if len(self.rows.get("test", [])) else []


def make_toy_rendered_arrays(root: str | Path, n: int = 16, resolution: int = 32, frames: int = 9,
                             seed: int = 0, shard_size: int = 8, with_tokens: bool = True,
                             splits: tuple[float, float] = (0.75, 0.125),
                             tower_offset_px: tuple[int, int] = (0, 0)) -> Path:
    """Write a toy rendered-arrays folder (tests and benchmarks; the same file format as ``ml.render``).

    Each sample: a light background with a road grid and three tower markers (the condition); the
    video draws an L-shaped path between two grid nodes progressively, with a head dot (the DESIGN
    section 8 toy task). Colours are those of ``ml.render.style``, so the decoder and the drawing
    layer read the toy as they read a rendered window. Splits are assigned in order train/val/test by
    ``splits`` fractions (train, val). With ``with_tokens`` also ``tokens_<shard>.npy`` (n, 8, 4).
    ``tower_offset_px`` (col, row) moves every tower off the route by the same amount (on top of a
    +-2 px jitter), as real towers stand off the road: then the signaling prior misses the route by
    that offset and a model has something to learn.
    """
    import pandas as pd

    from ml.render import style

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    R, K = resolution, frames
    step = max(4, R // 4)
    grid = np.arange(step // 2, R, step)
    conds = np.empty((n, R, R, 3), np.uint8)
    videos = np.empty((n, K, R, R, 3), np.uint8)
    toks = np.full((n, 8, 4), np.nan, np.float32)
    yy, xx = np.mgrid[0:R, 0:R]
    road = style.ROAD_GREY[5]  # a residential street (ml.cities.ROAD_CLASSES index 5)
    for i in range(n):
        img = np.empty((R, R, 3), np.uint8)
        img[:] = style.BACKGROUND
        for g in grid:
            img[g, :] = road
            img[:, g] = road
        a = rng.choice(grid, 2)
        b = rng.choice(grid, 2)
        while np.array_equal(a, b):
            b = rng.choice(grid, 2)
        # L-shaped path: along columns first (x), then rows (y)
        pts = [(a[0], a[1])]
        x, y = int(a[0]), int(a[1])
        while x != b[0]:
            x += int(np.sign(b[0] - x))
            pts.append((x, y))
        while y != b[1]:
            y += int(np.sign(b[1] - y))
            pts.append((x, y))
        pts = np.array(pts)
        towers = pts[np.linspace(0, len(pts) - 1, 3).round().astype(int)] + rng.integers(-2, 3, (3, 2)) \
            + np.asarray(tower_offset_px, dtype=np.int64)
        towers = towers.clip(0, R - 1)
        cond = img.copy()
        for (tx, ty) in towers:
            cond[max(0, ty - 1):ty + 2, max(0, tx - 1):tx + 2] = style.TOWER
        conds[i] = cond
        for k in range(K):
            fr = cond.copy()
            m = int(round(k / max(1, K - 1) * (len(pts) - 1)))
            for (px, py) in pts[:m + 1]:
                fr[py, px] = style.PATH
            hx, hy = pts[m]
            head = (xx - hx) ** 2 + (yy - hy) ** 2 <= 2.25
            fr[head] = style.HEAD
            videos[i, k] = fr
        if with_tokens:
            toks[i, :3, 0] = towers[:, 0] / R
            toks[i, :3, 1] = towers[:, 1] / R
            toks[i, :3, 2] = np.array([0.0, 0.5, 1.0])
            toks[i, :3, 3] = np.array([5, 0, 1])
    n_train = int(round(splits[0] * n))
    n_val = int(round(splits[1] * n))
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val))
    shard = np.arange(n) // shard_size
    rows = np.arange(n) % shard_size
    for s in np.unique(shard):
        sel = shard == s
        np.save(root / f"cond_{s:04d}.npy", conds[sel])
        np.save(root / f"video_{s:04d}.npy", videos[sel])
        if with_tokens:
            np.save(root / f"tokens_{s:04d}.npy", toks[sel])
    index = pd.DataFrame({
        "sample_id": [f"toy{i:05d}" for i in range(n)], "split": split, "shard": shard.astype(np.int64),
        "row": rows.astype(np.int64), "tile_crs": "EPSG:32632", "tile_x0": 500000.0, "tile_y0": 5300000.0,
        "tile_size_m": 1000.0, "resolution": R, "frames": K, "duration_s": 600.0,
    })
    index.to_parquet(root / "index.parquet", index=False)
    return root


class GDPOConditionDataset(Dataset):
    """Conditions of some rows of a rendered-arrays folder for GDPO: ``cond``, ``true_head_px``, ``mpp``, ``index``
    (and ``tokens`` / ``token_mask`` with ``with_tokens``).

    True head dots are decoded from the true videos with ``head_decoder`` (default
    ``ml.decode.decode_head_positions``, as the rewards decode generated ones) once per sample and cached;
    ``mpp = tile_size_m / resolution``.
    """

    def __init__(self, root: str | Path, rows: np.ndarray, head_decoder=None, with_tokens: bool = False,
                 max_records: int = 64) -> None:
        self.base = RenderedVideoDataset(root, rows, with_tokens=with_tokens, max_records=max_records)
        self.reader = self.base.reader
        if head_decoder is None:
            from ml.decode import decode_head_positions as head_decoder  # noqa: N813
        self.head_decoder = head_decoder
        self._heads: dict[int, np.ndarray] = {}
        idx = self.reader.index
        if "tile_size_m" not in idx.columns:
            raise ValueError(f"{root}/index.parquet: missing column 'tile_size_m' (needed for metres per pixel)")
        res = idx["resolution"].to_numpy(dtype=np.float64) if "resolution" in idx.columns else float(self.reader.resolution)
        self._mpp = idx["tile_size_m"].to_numpy(dtype=np.float64) / res

    def __len__(self) -> int:
        return len(self.base)

    def true_head(self, i: int) -> np.ndarray:
        if i not in self._heads:
            self._heads[i] = np.asarray(self.head_decoder(self.reader.video(i)), dtype=np.float32)
        return self._heads[i]

    def __getitem__(self, j: int) -> dict[str, Any]:
        item = self.base[j]
        i = int(item.pop("index"))
        item.pop("video")
        item["index"] = i
        item["true_head_px"] = torch.from_numpy(self.true_head(i))
        item["mpp"] = torch.tensor(self._mpp[i], dtype=torch.float32)
        return item

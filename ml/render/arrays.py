"""Memory-mapped reader of rendered arrays (``index.parquet`` + ``cond_XXXX.npy`` + ``video_XXXX.npy``
+ optional ``tokens_XXXX.npy``).

The one reader of the format that :func:`ml.render.dataset.render_samples` writes; the training
path uses it too, so it depends on numpy and pandas only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ml.geo.tile import Tile

INDEX_COLUMNS = ("sample_id", "split", "shard", "row")
SHARD_KINDS = ("cond", "video", "tokens")
REMEDY = ("render the folder again: `sig2gps run <city> --select rendered_videos` (or `python -m ml.render` for a "
          "folder made outside Dagster)")


class RenderedArraysError(ValueError):
    """A rendered-arrays folder is incomplete or damaged (a truncated or unreadable shard, fewer rows than
    ``index.parquet`` lists); the message names the file, what is wrong and what to do."""


def subsample_evenly(n: int, m: int) -> np.ndarray:
    """Indices of at most ``m`` of ``n`` time-ordered items, evenly spread (first and last kept).

    The one rule for cutting a window's signaling records to a fixed token count (renderer,
    ``ml.models.tokens.records_to_array`` and the training dataset use it).
    """
    if n <= m:
        return np.arange(n)
    if m <= 1:
        return np.zeros(max(m, 0), dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, m).round().astype(np.int64))


class RenderedArrays:
    """``len``, ``cond(i)``, ``video(i)``, ``tokens(i)``, ``tile(i)``, ``duration_s(i)``, ``index``, ``batch(rows)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        ip = self.path / "index.parquet"
        if not ip.is_file():
            raise FileNotFoundError(f"{ip}: no rendered arrays here (materialise rendered_videos first)")
        self.index = pd.read_parquet(ip).reset_index(drop=True)
        missing = set(INDEX_COLUMNS) - set(self.index.columns)
        if missing:
            raise ValueError(f"{ip}: missing column(s) {sorted(missing)}")
        self._cache: dict[tuple[str, int], np.ndarray | None] = {}
        self._shard = self.index["shard"].to_numpy()
        self._row = self.index["row"].to_numpy()
        self._rows_needed = (self.index.groupby("shard")["row"].max() + 1).to_dict() if len(self.index) else {}
        self.check()

    def check(self) -> None:
        """Open every shard that ``index.parquet`` lists (memory-mapped: headers and sizes only), so a missing,
        truncated or short shard is one clear :class:`RenderedArraysError` before any training or sampling."""
        for shard in self._rows_needed:
            for kind in SHARD_KINDS:
                self._arr(kind, int(shard), required=kind != "tokens")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def resolution(self) -> int:
        return int(self.index["resolution"].iloc[0]) if len(self) else 0

    @property
    def frames(self) -> int:
        return int(self.index["frames"].iloc[0]) if len(self) else 0

    def _arr(self, kind: str, shard: int, required: bool = True) -> np.ndarray | None:
        key = (kind, shard)
        if key not in self._cache:
            p = self.path / f"{kind}_{shard:04d}.npy"
            if not p.is_file():
                if required:
                    raise FileNotFoundError(f"{p}: shard listed in index.parquet is missing; {REMEDY}")
                self._cache[key] = None
            else:
                try:
                    arr = np.load(p, mmap_mode="r")
                except (ValueError, OSError, EOFError) as exc:
                    raise RenderedArraysError(f"{p}: rendered-array shard is truncated or corrupted ({p.stat().st_size} "
                                              f"bytes; numpy: {exc}); {REMEDY}") from exc
                need = int(self._rows_needed.get(shard, 0))
                if arr.ndim == 0 or arr.shape[0] < need:
                    raise RenderedArraysError(f"{p}: rendered-array shard has {arr.shape[0] if arr.ndim else 0} rows, "
                                              f"index.parquet lists {need}; {REMEDY}")
                self._cache[key] = arr
        return self._cache[key]

    def cond(self, i: int) -> np.ndarray:
        """uint8 ``(H, W, 3)`` conditioning image of row ``i`` of the index (memory-mapped, read-only)."""
        return self._arr("cond", int(self._shard[i]))[int(self._row[i])]

    def video(self, i: int) -> np.ndarray:
        """uint8 ``(K, H, W, 3)`` target video of row ``i`` of the index (memory-mapped, read-only)."""
        return self._arr("video", int(self._shard[i]))[int(self._row[i])]

    def tokens(self, i: int) -> np.ndarray | None:
        """float32 ``(R, 4)`` signaling tokens of row ``i`` when ``tokens_XXXX.npy`` shards exist, else None."""
        a = self._arr("tokens", int(self._shard[i]), required=False)
        return None if a is None else np.asarray(a[int(self._row[i])], dtype=np.float32)

    def tile(self, i: int) -> "Tile":
        from ml.geo.tile import Tile

        return Tile.from_record(self.index.iloc[i])

    def duration_s(self, i: int) -> float:
        return float(self.index["duration_s"].iloc[i])

    def indices(self, split: str | None = None) -> np.ndarray:
        """Row numbers of one split (all rows when ``split`` is None)."""
        if split is None:
            return np.arange(len(self))
        return np.nonzero(self.index["split"].to_numpy() == split)[0]

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(cond (B, H, W, 3), video (B, K, H, W, 3))`` uint8 copies of several rows."""
        rows = np.asarray(rows, dtype=np.int64)
        return np.stack([self.cond(i) for i in rows]), np.stack([self.video(i) for i in rows])


def concat_rendered(sources: list[str | Path], out_dir: str | Path, splits: tuple[str, ...] = ("train", "val"),
                    shard_size: int = 256) -> pd.DataFrame:
    """Copy the rows of ``splits`` from several rendered folders into one (e.g. a multi-city base set).

    All sources must share resolution and frame count. Sample ids are prefixed with the source
    folder's city (``outputs/<city>/render/...``) so they stay unique. Signaling-token shards are
    copied too when every source has them (with the same R). Returns the new index.
    """
    out_dir = Path(out_dir)
    arrays = [RenderedArrays(s) for s in sources]
    shapes = {(a.resolution, a.frames) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"concat_rendered: sources differ in (resolution, frames): {sorted(shapes)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, conds, videos, toks, shard = [], [], [], [], 0
    # signaling tokens are carried over only when every source has them with the same R
    with_tokens = all(len(a) == 0 or a.tokens(0) is not None for a in arrays)
    if with_tokens:
        rs = {a.tokens(0).shape[0] for a in arrays if len(a)}
        with_tokens = len(rs) <= 1

    def flush() -> None:
        nonlocal shard, conds, videos, toks
        if conds:
            np.save(out_dir / f"cond_{shard:04d}.npy", np.stack(conds))
            np.save(out_dir / f"video_{shard:04d}.npy", np.stack(videos))
            if with_tokens:
                np.save(out_dir / f"tokens_{shard:04d}.npy", np.stack(toks))
            shard, conds, videos, toks = shard + 1, [], [], []

    for a in arrays:
        city = a.path.parts[-3] if len(a.path.parts) >= 3 else a.path.name
        for i in np.concatenate([a.indices(s) for s in splits]):
            rec = a.index.iloc[int(i)].to_dict()
            rec.update(sample_id=f"{city}:{rec['sample_id']}", shard=shard, row=len(conds))
            rows.append(rec)
            conds.append(np.asarray(a.cond(int(i))))
            videos.append(np.asarray(a.video(int(i))))
            if with_tokens:
                toks.append(a.tokens(int(i)))
            if len(conds) == shard_size:
                flush()
    flush()
    index = pd.DataFrame(rows)
    index.to_parquet(out_dir / "index.parquet", index=False)
    return index

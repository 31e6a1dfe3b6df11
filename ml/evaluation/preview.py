"""A gallery for people: animated GIFs of a few target videos and a PNG contact sheet.

The contact sheet has one row per sample: the conditioning image, the K target frames and the
trajectory decoded from the video (round trip) over the map, with the ground-truth head dots.
Images are OpenStreetMap-derived: keep the "(c) OpenStreetMap contributors" credit when sharing
pictures of real cities. It renders and decodes, so it sits above both :mod:`ml.render` and
:mod:`ml.decode` (with the evaluation code), which keeps those two free of a circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import numpy as np

from ml.render.arrays import RenderedArrays

if TYPE_CHECKING:  # typing only: keeps networkx out of the training path
    from ml.cities.network import RoadNetwork


def upscale(img: np.ndarray, size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscaling of ``(..., H, W, 3)`` uint8 to about ``size`` pixels."""
    f = max(1, int(round(size / img.shape[-2])))
    return np.repeat(np.repeat(img, f, axis=-3), f, axis=-2)


def write_previews(
    arrays: RenderedArrays | str | Path,
    out_dir: str | Path,
    net: RoadNetwork | None = None,
    n: int = 4,
    rows: np.ndarray | None = None,
    fps: float = 3.0,
    snap: bool = False,
) -> list[Path]:
    """Write ``sample_<id>.gif`` for ``n`` samples and ``contact_sheet.png`` into ``out_dir``.

    Args:
        arrays: a :class:`RenderedArrays` (or its folder).
        out_dir: usually ``outputs/<city>/render/gallery``.
        net: road network, used to snap the decoded trajectory when ``snap``.
        n: number of samples (the first ``n`` rows unless ``rows`` is given).
    Returns the written paths.
    """
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ml.decode import decode_video_to_trajectory

    ra = arrays if isinstance(arrays, RenderedArrays) else RenderedArrays(arrays)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = np.arange(min(n, len(ra))) if rows is None else np.asarray(rows)[:n]
    written: list[Path] = []
    if len(rows) == 0:
        return written
    K, R = ra.frames, ra.resolution
    for i in rows:
        sid = str(ra.index["sample_id"].iloc[i])
        frames = upscale(np.asarray(ra.video(i)))
        p = out / f"sample_{sid}.gif"
        imageio.mimsave(p, list(frames), duration=1.0 / fps, loop=0)
        written.append(p)
    show = np.unique(np.linspace(0, K - 1, min(K, 9)).round().astype(int))
    ncol = 2 + len(show)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.6 * ncol, 1.7 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        video = np.asarray(ra.video(i))
        tile, W = ra.tile(i), ra.duration_s(i)
        axes[r, 0].imshow(ra.cond(i), interpolation="nearest")
        axes[r, 0].set_title("condition" if r == 0 else "", fontsize=7)
        for c, k in enumerate(show):
            axes[r, 1 + c].imshow(video[k], interpolation="nearest")
            if r == 0:
                axes[r, 1 + c].set_title(f"k={k} t={k * W / max(K - 1, 1):.0f}s", fontsize=7)
        eval_t = np.linspace(0.0, W, 61)
        dec = decode_video_to_trajectory(video, tile, R, W, net, eval_t, snap=snap and net is not None)
        ax = axes[r, -1]
        ax.imshow(ra.cond(i), interpolation="nearest")
        ok = np.isfinite(dec.xy).all(axis=1)
        if ok.any():
            px = tile.xy_to_pixel(dec.xy[ok], R) - 0.5
            ax.plot(px[:, 0], px[:, 1], "-", color="magenta", lw=1.0)
        ah = np.isfinite(dec.anchors_xy).all(axis=1)
        if ah.any():
            pa = tile.xy_to_pixel(dec.anchors_xy[ah], R) - 0.5
            ax.plot(pa[:, 0], pa[:, 1], "o", ms=2.5, mfc="none", mec="blue", mew=0.6)
        if r == 0:
            ax.set_title("decoded", fontsize=7)
        axes[r, 0].set_ylabel(str(ra.index["sample_id"].iloc[i]), fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("map data (c) OpenStreetMap contributors where real", fontsize=6, y=0.01, va="bottom")
    fig.tight_layout()
    p = out / "contact_sheet.png"
    fig.savefig(p, dpi=130)
    plt.close(fig)
    written.append(p)
    return written

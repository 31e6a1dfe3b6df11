"""Conditioning images and target videos (numpy rasterisation, vectorised).

- :func:`render_condition_image`: roads by class on a light background, the signaling polyline
  through the serving towers in time order with a colour ramp along time, tower markers.
- :func:`render_target_video`: K frames; frame ``k`` is the conditioning image with the
  ground-truth path drawn up to ``k * W / (K - 1)`` seconds (red) and a blue head dot at the
  position at that time.

Colours are the constants of :mod:`ml.render.style`. The road layer of a tile is rasterised from
the network's segments found with a sorted-x index (built once per network), so no city-wide
raster is needed and nothing depends on the ground truth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import weakref

import numpy as np

from ml.geo.tile import Tile
from ml.render import style
from ml.render.config import RenderConfig
from ml.render.raster import clip_segments_to_box, sample_segments, stamp_disks, stamp_squares
from ml.geo.track import interpolate_positions

if TYPE_CHECKING:  # typing only: keeps networkx out of the training path
    from ml.cities.network import RoadNetwork

_DEFAULT_CFG = RenderConfig()


class _RoadIndex:
    """Undirected road segments of one network sorted by their minimum x, with class and max length."""

    def __init__(self, net: RoadNetwork) -> None:
        s = net.segments
        a, b = s["a"], s["b"]
        cls = net.edge_class[s["edge"]].astype(np.int8)
        # a two-way street is two directed edges with the same geometry: keep one copy
        lo = np.where((a[:, 0] < b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] <= b[:, 1])), 0, 1)
        p = np.where(lo[:, None] == 0, a, b)
        q = np.where(lo[:, None] == 0, b, a)
        key = np.round(np.column_stack([p, q]), 2)
        _, first = np.unique(key, axis=0, return_index=True)
        first.sort()
        p, q, cls = p[first], q[first], cls[first]
        order = np.argsort(p[:, 0], kind="stable")  # p has the smaller x
        self.a, self.b, self.cls = p[order], q[order], cls[order]
        self.xmin = self.a[:, 0]
        self.max_dx = float(np.max(self.b[:, 0] - self.a[:, 0])) if len(self.a) else 0.0

    def query(self, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
        """Indices of segments whose bounding box meets the box."""
        i0 = np.searchsorted(self.xmin, xmin - self.max_dx, side="left")
        i1 = np.searchsorted(self.xmin, xmax, side="right")
        a, b = self.a[i0:i1], self.b[i0:i1]
        ok = (
            (b[:, 0] >= xmin)
            & (np.maximum(a[:, 1], b[:, 1]) >= ymin)
            & (np.minimum(a[:, 1], b[:, 1]) <= ymax)
        )
        return np.nonzero(ok)[0] + i0


_ROAD_INDEX: dict[int, tuple[weakref.ref, _RoadIndex]] = {}


def road_index(net: RoadNetwork) -> _RoadIndex:
    """The (cached) road segment index of a network."""
    hit = _ROAD_INDEX.get(id(net))
    if hit is not None and hit[0]() is net:
        return hit[1]
    idx = _RoadIndex(net)
    _ROAD_INDEX[id(net)] = (weakref.ref(net), idx)
    return idx


class _CityRoadRaster:
    """The whole city's road classes rasterised once at ``factor`` x the resolution of one zoom level.

    Zoom sizes repeat, so every tile of that size shares the metres per pixel ``mpp``. The city is
    drawn at ``mpp / factor`` (centre lines, then a Euclidean distance transform per class gives
    "pixel centre within half the line width"); a tile is then a gather at its pixel centres, which
    reproduces the per-tile rule to ``1 / factor`` pixel wherever the tile origin falls.
    """

    MAX_PIXELS = 48_000_000

    def __init__(self, net: RoadNetwork, mpp: float, radii_px: tuple[float, ...], factor: int) -> None:
        from scipy.ndimage import distance_transform_edt

        idx = road_index(net)
        self.hm = mpp / factor
        pad = (max(radii_px) + 2.0) * mpp
        xmin, ymin, xmax, ymax = net.bounds
        self.X0, self.Y1 = xmin - pad, ymax + pad
        self.W = int(np.ceil((xmax + pad - self.X0) / self.hm)) + 1
        self.H = int(np.ceil((self.Y1 - (ymin - pad)) / self.hm)) + 1
        canvas = np.full(self.H * self.W, 127, dtype=np.int8)
        a = np.column_stack([(idx.a[:, 0] - self.X0) / self.hm, (self.Y1 - idx.a[:, 1]) / self.hm])
        b = np.column_stack([(idx.b[:, 0] - self.X0) / self.hm, (self.Y1 - idx.b[:, 1]) / self.hm])
        for c in sorted(np.unique(idx.cls), reverse=True):  # minor classes first, major on top
            m = idx.cls == c
            pts, _, _ = sample_segments(a[m], b[m], step=0.5)
            pix, _ = stamp_disks(pts, 0.0, (self.H, self.W))
            line = np.ones(self.H * self.W, dtype=bool)
            line[pix] = False
            r = max(radii_px[int(c)], 0.5) * factor
            d = distance_transform_edt(line.reshape(self.H, self.W))
            canvas[(d <= r).ravel()] = c
        self.canvas = canvas.reshape(self.H, self.W)
        self.factor = factor

    def classes(self, tile: Tile, resolution: int) -> np.ndarray:
        """``(H * W,)`` road class per tile pixel (127: no road)."""
        mpp = tile.metres_per_pixel(resolution)
        centres = (np.arange(resolution) + 0.5) * mpp
        cols = np.floor((tile.x0 + centres - self.X0) / self.hm).astype(np.int64)
        rows = np.floor((self.Y1 - (tile.y0 + tile.size_m - centres)) / self.hm).astype(np.int64)
        out = np.full((resolution, resolution), 127, dtype=np.int8)
        okc, okr = (cols >= 0) & (cols < self.W), (rows >= 0) & (rows < self.H)
        out[np.ix_(okr, okc)] = self.canvas[np.ix_(rows[okr], cols[okc])]
        return out.ravel()


_CITY_RASTERS: dict[tuple, tuple[weakref.ref, _CityRoadRaster | None]] = {}
_MAX_CITY_RASTERS = 8


def city_road_raster(net: RoadNetwork, mpp: float, radii_px: tuple[float, ...]) -> _CityRoadRaster | None:
    """The cached city raster for one metres-per-pixel (``None`` when it would be too large)."""
    key = (id(net), round(float(mpp), 9), tuple(round(r, 6) for r in radii_px))
    hit = _CITY_RASTERS.get(key)
    if hit is not None and hit[0]() is net:
        return hit[1]
    xmin, ymin, xmax, ymax = net.bounds
    side_px = ((xmax - xmin) / mpp + 2 * max(radii_px) + 8) * ((ymax - ymin) / mpp + 2 * max(radii_px) + 8)
    factor = int(min(4, np.floor(np.sqrt(_CityRoadRaster.MAX_PIXELS / max(side_px, 1.0)))))
    raster = _CityRoadRaster(net, mpp, radii_px, factor) if factor >= 2 else None
    if len(_CITY_RASTERS) >= _MAX_CITY_RASTERS:
        _CITY_RASTERS.pop(next(iter(_CITY_RASTERS)))
    _CITY_RASTERS[key] = (weakref.ref(net), raster)
    return raster


def _radii(cfg: RenderConfig, resolution: int) -> tuple[float, ...]:
    return tuple(cfg.scaled(w, resolution) / 2.0 for w in cfg.road_width_px)


def prepare_road_rasters(net: RoadNetwork, tile_sizes_m, resolution: int, cfg: RenderConfig | None = None) -> None:
    """Build the city rasters for these tile sizes now (e.g. before forking render workers)."""
    cfg = cfg or _DEFAULT_CFG
    for size in sorted(set(float(s) for s in tile_sizes_m)):
        city_road_raster(net, size / resolution, _radii(cfg, resolution))


def render_road_layer(
    net: RoadNetwork, tile: Tile, resolution: int, cfg: RenderConfig | None = None, use_city_raster: bool = True
) -> np.ndarray:
    """``(H, W, 3)`` uint8: the background with the tile's roads drawn by class (major on top).

    A road covers a pixel when the pixel centre lies within half the class's line width of it.
    By default the cached city raster of the tile's zoom level is sampled (exact to 1/4 pixel,
    built once per metres-per-pixel); ``use_city_raster=False`` rasterises the tile's segments
    directly (also the fallback for cities too large to cache).
    """
    cfg = cfg or _DEFAULT_CFG
    H = W = int(resolution)
    if use_city_raster:
        raster = city_road_raster(net, tile.metres_per_pixel(resolution), _radii(cfg, resolution))
        if raster is not None:
            canvas = raster.classes(tile, resolution)
            img = np.empty((H * W, 3), dtype=np.uint8)
            img[:] = style.BACKGROUND
            on = canvas < 127
            img[on] = np.asarray(style.ROAD_GREY, dtype=np.uint8)[canvas[on]][:, None]
            return img.reshape(H, W, 3)
    img = np.empty((H * W, 3), dtype=np.uint8)
    img[:] = style.BACKGROUND
    idx = road_index(net)
    mpp = tile.metres_per_pixel(resolution)
    pad = 4.0 * mpp
    sel = idx.query(tile.x0 - pad, tile.y0 - pad, tile.x0 + tile.size_m + pad, tile.y0 + tile.size_m + pad)
    if len(sel) == 0:
        return img.reshape(H, W, 3)
    a = tile.xy_to_pixel(idx.a[sel], resolution)
    b = tile.xy_to_pixel(idx.b[sel], resolution)
    a, b, kept = clip_segments_to_box(a, b, np.array([-4.0, -4.0]), np.array([W + 4.0, H + 4.0]))
    cls = idx.cls[sel][kept]
    canvas = np.full(H * W, 127, dtype=np.int16)  # best (smallest) class per pixel
    for c in np.unique(cls):
        m = cls == c
        pts, _, _ = sample_segments(a[m], b[m])
        # thin lines: the pixels the line passes through (a gap-free chain); the city raster uses
        # "centre within 0.5 px", so the two differ on a few edge pixels of 1 px roads
        pix, _ = stamp_disks(pts, cfg.scaled(cfg.road_width_px[int(c)], resolution) / 2.0, (H, W))
        np.minimum.at(canvas, pix, int(c))
    grey = np.asarray(style.ROAD_GREY, dtype=np.uint8)
    on = canvas < 127
    img[on] = grey[canvas[on]][:, None]
    return img.reshape(H, W, 3)


def render_condition_image(
    net: RoadNetwork,
    tile: Tile,
    resolution: int,
    record_xy: np.ndarray,
    tower_xy: np.ndarray,
    record_t: np.ndarray | None = None,
    cfg: RenderConfig | None = None,
) -> np.ndarray:
    """The conditioning image ``(H, W, 3)`` uint8 of one window.

    Args:
        net: the city's road network (projected metres).
        tile: the window's tile (chosen from the signaling positions only).
        resolution: image side in pixels.
        record_xy: ``(n, 2)`` the points of the signaling polyline in time order (``RenderConfig.trace_xy``: the
            serving towers, or the records' observation-model positions).
        tower_xy: ``(m, 2)`` tower positions to mark (the serving towers, or all towers in the tile).
        record_t: optional ``(n,)`` record times (any unit); the ramp follows time when given,
            the record order otherwise.
        cfg: widths (defaults: ``RenderConfig()``).
    """
    cfg = cfg or _DEFAULT_CFG
    H = W = int(resolution)
    img = render_road_layer(net, tile, resolution, cfg).reshape(H * W, 3).copy()
    rec = tile.xy_to_pixel(np.asarray(record_xy, dtype=np.float64).reshape(-1, 2), resolution)
    n = len(rec)
    if n:
        if record_t is None or n == 1:
            frac_rec = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
        else:
            rt = np.asarray(record_t, dtype=np.float64)
            span = rt[-1] - rt[0]
            frac_rec = (rt - rt[0]) / span if span > 0 else np.linspace(0.0, 1.0, n)
        if n == 1:
            a, b, fa, fb = rec, rec, frac_rec, frac_rec
        else:
            a, b, fa, fb = rec[:-1], rec[1:], frac_rec[:-1], frac_rec[1:]
        pts, seg, frac = sample_segments(a, b)
        ptime = fa[seg] + frac * (fb[seg] - fa[seg])
        pix, pi = stamp_disks(pts, cfg.scaled(cfg.signal_width_px, resolution) / 2.0, (H, W))
        latest = np.full(H * W, -1.0)
        np.maximum.at(latest, pix, ptime[pi])
        on = latest >= 0
        img[on] = style.ramp_colours(latest[on])
    towers = np.asarray(tower_xy, dtype=np.float64).reshape(-1, 2)
    if len(towers):
        tp = tile.xy_to_pixel(towers, resolution)
        img[stamp_squares(tp, cfg.scaled(cfg.tower_size_px, resolution), (H, W))] = style.TOWER
    return img.reshape(H, W, 3)


def frame_times(duration_s: float, frames: int) -> np.ndarray:
    """Times (seconds since t0) shown by the K frames: ``k * W / (K - 1)``."""
    return np.linspace(0.0, float(duration_s), int(frames))


def render_target_video(
    cond_image: np.ndarray,
    tile: Tile,
    resolution: int,
    truth_xy: np.ndarray,
    truth_t: np.ndarray,
    duration_s: float,
    frames: int,
    cfg: RenderConfig | None = None,
) -> np.ndarray:
    """The target video ``(K, H, W, 3)`` uint8 drawn over ``cond_image``.

    Frame ``k`` shows the truth path (``style.PATH``) from ``t = 0`` up to ``t_k = k * W / (K - 1)``
    and a head dot (``style.HEAD``, radius ``cfg.head_radius``, wider than the path) at the
    truth position at ``t_k`` (held before the first / after the last truth time). Parts of the
    path outside the tile are simply not drawn.

    Args:
        truth_xy: ``(n, 2)`` ground-truth positions (projected metres), time-ordered.
        truth_t: ``(n,)`` their times in seconds since the window start.
    """
    cfg = cfg or _DEFAULT_CFG
    H = W = int(resolution)
    K = int(frames)
    cond = np.asarray(cond_image, dtype=np.uint8).reshape(H * W, 3)
    P = tile.xy_to_pixel(np.asarray(truth_xy, dtype=np.float64).reshape(-1, 2), resolution)
    t = np.asarray(truth_t, dtype=np.float64).reshape(-1)
    if len(P) != len(t):
        raise ValueError(f"truth_xy has {len(P)} rows but truth_t has {len(t)}")
    if len(P) == 0:
        raise ValueError("render_target_video needs at least one truth position")
    tk = frame_times(duration_s, K)
    video = np.empty((K, H * W, 3), dtype=np.uint8)
    video[:] = cond[None]
    if len(P) >= 2:
        pts, seg, frac = sample_segments(P[:-1], P[1:])
        ptime = t[seg] + frac * (t[seg + 1] - t[seg])
        pix, pi = stamp_disks(pts, cfg.scaled(cfg.path_width_px, resolution) / 2.0, (H, W))
        first = np.full(H * W, np.inf)
        np.minimum.at(first, pix, ptime[pi])
        drawn = np.nonzero(np.isfinite(first))[0]
        masks = first[drawn][None, :] <= tk[:, None] + 1e-9  # (K, D)
        fk, di = np.nonzero(masks)
        video[fk, drawn[di]] = style.PATH
    head = interpolate_positions(t, P, tk)
    hpix, hk = stamp_disks(head, cfg.head_radius(resolution), (H, W))
    video[hk, hpix] = style.HEAD
    return video.reshape(K, H, W, 3)

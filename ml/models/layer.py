"""The drawing layer: what the video model generates over the condition image (DESIGN section 8).

A layer is ``(B, 2, K, H, W)`` in model space [-1, 1] (-1: nothing drawn, +1: drawn):

* channel 0 (``PATH_CHANNEL``): the path drawn so far (the rendered truth's red path plus its head);
* channel 1 (``HEAD_CHANNEL``): the head as a soft Gaussian blob (``ModelConfig.head_blob_sigma_px``),
  so its weighted centroid carries a sub-pixel position.

Three pure functions, shared by training, sampling, GDPO, evaluation and serving:

* :func:`layer_from_video`: the target layer of a rendered RGB video (colour rules of
  :mod:`ml.render.style`, the same the decoder uses);
* :func:`composite_layer`: the RGB video that people, rewards and the decoder see, from the
  condition image and a layer (the one compositing function);
* :func:`signal_prior`: the layer the signaling records alone suggest: the records' observation-model
  positions (coverage centres, handovers on cell boundaries; the record tokens) linearly interpolated
  to each frame's time (head) and the polyline through those positions up to
  the frame (path). It is input-only information (no GPS), so it is fair conditioning, and the
  model can start from it (``ModelConfig.prior_residual``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ml.pixels import unit_from_255, unit_to_255
from ml.render import style

LAYER_CHANNELS, PATH_CHANNEL, HEAD_CHANNEL = style.LAYER_CHANNELS, style.PATH_CHANNEL, style.HEAD_CHANNEL
#: default head blob sigma in pixels at 64 px (``ModelConfig.head_blob_sigma_px``): 0.7 of the rendered
#: dot's radius, so the blob's 0.35 contour (where a composited blob passes the decoder's blueness
#: threshold) is about the dot. A wider blob (3 px) learned faster on the toy task but worse on the
#: city windows (bench/sft_objective.py, docs/results/video_drawing.md)
DEFAULT_HEAD_SIGMA_PX = 1.4


def head_sigma_px(resolution: int, sigma_at_64: float = DEFAULT_HEAD_SIGMA_PX) -> float:
    """Sigma (pixels) of the head blob at a resolution, from its value at 64 px, scaled as the rendered dot
    is (``RenderConfig.head_radius``, which has a floor, so small tiles keep a blob of a few pixels)."""
    from ml.render.config import RenderConfig

    cfg = RenderConfig()
    return float(sigma_at_64) * cfg.head_radius(resolution) / cfg.head_radius(style.REFERENCE_RESOLUTION)


def path_sigma_px(resolution: int) -> float:
    """Sigma (pixels) of the soft prior path line (half the rendered path width, at least 0.5 px)."""
    from ml.render.config import RenderConfig

    cfg = RenderConfig()
    return max(0.5, 0.5 * cfg.scaled(cfg.path_width_px, resolution))


def _pixel_grid(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates (col + 0.5, row + 0.5), each (h, w)."""
    rows = torch.arange(h, device=device, dtype=torch.float32) + 0.5
    cols = torch.arange(w, device=device, dtype=torch.float32) + 0.5
    return cols.view(1, w).expand(h, w), rows.view(h, 1).expand(h, w)


def _blob(cx: Tensor, cy: Tensor, h: int, w: int, sigma: float) -> Tensor:
    """Gaussian blobs in [0, 1] at (cx, cy) of any leading shape -> (..., h, w)."""
    gx, gy = _pixel_grid(h, w, cx.device)
    d2 = (gx - cx[..., None, None]) ** 2 + (gy - cy[..., None, None]) ** 2
    return torch.exp(-d2 / (2.0 * sigma * sigma))


@torch.no_grad()
def layer_from_video(video: Tensor, head_sigma_at_64: float = DEFAULT_HEAD_SIGMA_PX) -> Tensor:
    """The drawing layer ``(B, 2, K, H, W)`` in [-1, 1] of rendered RGB videos ``(B, 3, K, H, W)`` in [-1, 1].

    Path: pixels whose redness or blueness passes the decoder thresholds. Head: a Gaussian blob
    (sigma :func:`head_sigma_px` of ``head_sigma_at_64``) at the centroid of the head-coloured pixels; a
    frame without a head (the path left the tile) has an empty head channel.
    """
    B, C, K, H, W = video.shape
    if C != 3:
        raise ValueError(f"layer_from_video needs RGB videos (B, 3, K, H, W), got {tuple(video.shape)}")
    v = unit_to_255(video.float())
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    head = (b - torch.maximum(r, g)) > style.BLUENESS_THRESHOLD
    path = ((r - torch.maximum(g, b)) > style.REDNESS_THRESHOLD) | head
    gx, gy = _pixel_grid(H, W, video.device)
    wgt = head.float()
    n = wgt.sum((-2, -1))
    cx = (wgt * gx).sum((-2, -1)) / n.clamp_min(1.0)
    cy = (wgt * gy).sum((-2, -1)) / n.clamp_min(1.0)
    blob = _blob(cx, cy, H, W, head_sigma_px(H, head_sigma_at_64)) * (n > 0).float()[..., None, None]
    return torch.stack([path.float(), blob], dim=1) * 2.0 - 1.0


def _colour(rgb: tuple[int, int, int], like: Tensor) -> Tensor:
    return unit_from_255(torch.tensor(rgb, dtype=like.dtype, device=like.device)).view(1, 3, 1, 1, 1)


def composite_layer(cond_image: Tensor, layer: Tensor) -> Tensor:
    """RGB video ``(B, 3, K, H, W)`` in [-1, 1]: the layer drawn over the condition image ``(B, 3, H, W)``.

    The path channel blends toward ``style.PATH``, then the head channel toward ``style.HEAD``
    (alpha = the channel mapped to [0, 1]), so a rendered truth comes back to within the blob's
    softness and a generated layer is read by the same colour decoder as a rendered video.
    """
    a = ((layer.float() + 1.0) * 0.5).clamp(0.0, 1.0)
    path_a, head_a = a[:, PATH_CHANNEL : PATH_CHANNEL + 1], a[:, HEAD_CHANNEL : HEAD_CHANNEL + 1]
    base = cond_image.float().unsqueeze(2)
    out = base * (1.0 - path_a) + _colour(style.PATH, base) * path_a
    return out * (1.0 - head_a) + _colour(style.HEAD, base) * head_a


def prior_positions(tokens: Tensor, token_mask: Tensor | None, frames: int, resolution: int) -> Tensor:
    """``(B, K, 2)`` pixel (col, row) of the records' positions linearly interpolated to each frame time.

    ``tokens`` (B, R, 4) in the ``ml.models.tokens`` format (tile fractions, time fraction); rows
    outside ``token_mask`` (or with NaN) are ignored. Held before the first and after the last record;
    a window without records gets the tile centre.
    """
    tok = tokens.float()
    valid = torch.isfinite(tok[..., :3]).all(-1)
    if token_mask is not None:
        valid &= token_mask.bool().to(tok.device)
    t = torch.where(valid, tok[..., 2], torch.full_like(tok[..., 2], float("inf")))
    t, order = torch.sort(t, dim=1)
    xy = torch.gather(torch.nan_to_num(tok[..., :2], nan=0.5), 1, order[..., None].expand(-1, -1, 2)) * resolution
    n = valid.sum(1)  # (B,)
    tk = torch.linspace(0.0, 1.0, frames, device=tok.device).expand(tok.shape[0], frames).contiguous()
    idx = torch.searchsorted(t.contiguous(), tk, right=True)  # first record after tk
    last = (n - 1).clamp_min(0)[:, None]
    i1 = torch.minimum(idx, last)
    i0 = torch.minimum((idx - 1).clamp_min(0), last)
    t0, t1 = torch.gather(t, 1, i0), torch.gather(t, 1, i1)
    span = torch.where(torch.isfinite(t1 - t0) & (t1 > t0), t1 - t0, torch.ones_like(t0))
    frac = torch.where(torch.isfinite(t0) & (t1 > t0), ((tk - t0) / span).clamp(0.0, 1.0), torch.zeros_like(tk))
    p0 = torch.gather(xy, 1, i0[..., None].expand(-1, -1, 2))
    p1 = torch.gather(xy, 1, i1[..., None].expand(-1, -1, 2))
    pos = p0 + frac[..., None] * (p1 - p0)
    centre = torch.full_like(pos, resolution / 2.0)
    return torch.where((n > 0)[:, None, None], pos, centre)


def drawn_head_positions(layer: Tensor) -> tuple[Tensor, Tensor]:
    """Each frame's head in a layer ``(B, 2, K, H, W)`` in model space, as the decoder sees it, differentiable:
    ``(B, K, 2)`` pixel (col, row) centroids of the head alpha above 0.5 (the part a composite draws), and a
    ``(B, K)`` mask of the frames where anything is drawn. Only drawn pixels carry weight, so a loss on the
    position moves the blob that is there (it cannot win by lighting far pixels)."""
    B, _, K, H, W = layer.shape
    w = torch.relu((layer[:, HEAD_CHANNEL].float() + 1.0) * 0.5 - 0.5)
    gx, gy = _pixel_grid(H, W, layer.device)
    mass = w.sum((-2, -1))
    xy = torch.stack([(w * gx).sum((-2, -1)), (w * gy).sum((-2, -1))], dim=-1) / mass.clamp_min(1e-6)[..., None]
    return xy, mass > 1e-3


def head_positions(layer: Tensor) -> tuple[Tensor, Tensor]:
    """Exact head positions of target layers ``(B, 2, K, H, W)`` (model space): ``(B, K, 2)`` weighted
    centroids of the blob and a ``(B, K)`` mask of the frames that have one (blob peak above half)."""
    B, _, K, H, W = layer.shape
    alpha = ((layer[:, HEAD_CHANNEL].float() + 1.0) * 0.5).clamp(0.0, 1.0)
    gx, gy = _pixel_grid(H, W, layer.device)
    mass = alpha.sum((-2, -1)).clamp_min(1e-6)
    xy = torch.stack([(alpha * gx).sum((-2, -1)) / mass, (alpha * gy).sum((-2, -1)) / mass], dim=-1)
    return xy, alpha.amax((-2, -1)) > 0.5


def head_position_loss(pred_layer: Tensor, target_layer: Tensor, frames: Tensor | None = None) -> Tensor:
    """Mean smooth-L1 distance in pixels (beta 1 px) between the drawn heads of predicted clean layers
    (:func:`drawn_head_positions`) and the target heads, over the frames where both have one (0 when none);
    ``frames`` ``(B, K)`` bool, when given, limits it to those frames (continuation: the drawn ones)."""
    pred, drawn = drawn_head_positions(pred_layer)
    true, present = head_positions(target_layer)
    d = torch.linalg.vector_norm(pred - true, dim=-1)
    per = torch.where(d < 1.0, 0.5 * d * d, d - 0.5)
    m = (present & drawn) if frames is None else (present & drawn & frames)
    m = m.float()
    return (per * m).sum() / m.sum().clamp_min(1.0)


def signal_prior(tokens: Tensor, token_mask: Tensor | None, frames: int, resolution: int,
                 head_sigma_at_64: float = DEFAULT_HEAD_SIGMA_PX) -> Tensor:
    """The signaling prior as a layer ``(B, 2, K, H, W)`` in [-1, 1] (see the module docstring)."""
    pos = prior_positions(tokens, token_mask, frames, resolution)  # (B, K, 2)
    H = W = int(resolution)
    head = _blob(pos[..., 0], pos[..., 1], H, W, head_sigma_px(resolution, head_sigma_at_64))  # (B, K, H, W)
    ps = path_sigma_px(resolution)
    gx, gy = _pixel_grid(H, W, pos.device)
    pix = torch.stack([gx, gy], -1)  # (H, W, 2)
    a, b = pos[:, :-1], pos[:, 1:]  # (B, K-1, 2) segments between consecutive frame positions
    ab = b - a
    L2 = (ab ** 2).sum(-1).clamp_min(1e-9)  # (B, K-1)
    ap = pix[None, None] - a[:, :, None, None, :]  # (B, K-1, H, W, 2)
    u = ((ap * ab[:, :, None, None, :]).sum(-1) / L2[..., None, None]).clamp(0.0, 1.0)
    d2 = ((ap - u[..., None] * ab[:, :, None, None, :]) ** 2).sum(-1)
    seg = torch.exp(-d2 / (2.0 * ps * ps))  # (B, K-1, H, W)
    first = _blob(pos[:, 0, 0], pos[:, 0, 1], H, W, ps)[:, None]  # frame 0: the start point
    path = torch.cat([first, torch.maximum(first, torch.cummax(seg, dim=1).values)], dim=1) if frames > 1 else first
    path = torch.maximum(path, head)
    return torch.stack([path, head], dim=1) * 2.0 - 1.0

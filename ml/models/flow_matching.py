"""Conditional flow matching (rectified flow) as pure functions.

Convention shared by SFT, sampling and the GDPO SDE: flow time ``s`` in [0, 1], s = 1 is pure noise
and s = 0 is data; ``x_s = (1 - s) x0 + s e`` with e ~ N(0, I); the velocity ``v = dx/ds = e - x0``;
an Euler step from s to s' is ``x_{s'} = x_s + (s' - s) v``.
"""

from __future__ import annotations

import torch


def _bcast(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) matching ``like``'s rank."""
    s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        return s
    return s.reshape(-1, *([1] * (like.ndim - 1)))


def interpolate(x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """x_s = (1 - s) x0 + s e, with ``s`` a scalar or (B,)."""
    sb = _bcast(s, x0)
    return (1.0 - sb) * x0 + sb * noise


def target_velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target e - x0 (constant along the straight path)."""
    return noise - x0


def shift_time(s: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift toward noise for shift > 1: s' = shift s / (1 + (shift - 1) s) (identity at shift 1)."""
    if shift == 1.0:
        return s
    return shift * s / (1.0 + (shift - 1.0) * s)


def sample_timesteps(
    n: int,
    generator: torch.Generator | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
    device: torch.device | str | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """(n,) flow times from a logit-normal: s = sigmoid(mean + std N(0, 1)), shifted, clipped to [eps, 1 - eps]."""
    z = torch.randn(n, generator=generator, device=generator.device if generator is not None else device)
    s = torch.sigmoid(mean + std * z)
    s = shift_time(s, shift)
    return s.clamp(eps, 1.0 - eps).to(device) if device is not None else s.clamp(eps, 1.0 - eps)


def foreground_weights(x0: torch.Tensor, prior: torch.Tensor | None, weight: float,
                       head_weight: float = 1.0) -> torch.Tensor:
    """Per-pixel loss weights: ``weight`` where the target (or the prior) is drawn, 1 elsewhere; for a drawing
    layer the head channel's weights are multiplied by ``head_weight``.

    "Drawn" is a model-space value above 0 in any channel (layer channels run from -1, nothing, to
    +1, drawn); for an RGB target it is a pixel that differs from the first frame's background by
    more than a quarter of the range, which the red path and the blue head do. The prior's drawn
    pixels count too, so that erasing a wrong prior is learned as strongly as drawing.
    """
    def drawn(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 2:  # a drawing layer
            return (x > 0).any(dim=1, keepdim=True)
        return ((x - x[:, :, :1]).abs() > 0.5).any(dim=1, keepdim=True)

    fg = drawn(x0)
    if prior is not None:
        fg = fg | drawn(prior)
    w = 1.0 + (float(weight) - 1.0) * fg.float()
    if head_weight != 1.0 and x0.shape[1] == 2:
        from ml.render.style import HEAD_CHANNEL

        scale = torch.ones(1, 2, 1, 1, 1, dtype=w.dtype, device=w.device)
        scale[:, HEAD_CHANNEL] = float(head_weight)
        w = w * scale
    return w


def flow_matching_loss(
    pred_velocity: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    x_s: torch.Tensor | None = None,
    s: torch.Tensor | None = None,
    space: str = "velocity",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The flow-matching loss in velocity space (MSE on e - x0) or x0 space (MSE on the implied clean
    sample ``x_s - s v``, i.e. the velocity error times s^2), float32, as a weighted mean (weights broadcast over
    channels; normalised by their sum so the scale stays that of an unweighted MSE)."""
    if space == "velocity":
        err = pred_velocity.float() - target_velocity(x0, noise).float()
    elif space == "x0":
        if x_s is None or s is None:
            raise ValueError("the x0-space loss needs x_s and s")
        err = x0_from_velocity(x_s.float(), pred_velocity.float(), s) - x0.float()
    else:
        raise ValueError(f"loss space must be 'velocity' or 'x0', got '{space}'")
    sq = err ** 2
    if weight is None:
        return sq.mean()
    w = weight.float().expand_as(sq)
    return (sq * w).sum() / w.sum()


def x0_from_velocity(x_s: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The data estimate implied by a velocity at time s: x0 = x_s - s v."""
    return x_s - _bcast(s, x_s) * v


def timestep_grid(n_steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """(n_steps + 1,) decreasing flow times from 1 to 0 (uniform, then shifted)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    s = torch.linspace(1.0, 0.0, n_steps + 1, device=device)
    return shift_time(s, shift)

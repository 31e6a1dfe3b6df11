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


def flow_matching_loss(pred_velocity: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the predicted velocity and e - x0 (float32)."""
    return torch.mean((pred_velocity.float() - target_velocity(x0, noise).float()) ** 2)


def x0_from_velocity(x_s: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The data estimate implied by a velocity at time s: x0 = x_s - s v."""
    return x_s - _bcast(s, x_s) * v


def timestep_grid(n_steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """(n_steps + 1,) decreasing flow times from 1 to 0 (uniform, then shifted)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    s = torch.linspace(1.0, 0.0, n_steps + 1, device=device)
    return shift_time(s, shift)

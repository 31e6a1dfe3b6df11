"""The Flow-GRPO SDE step: a stochastic sampler step with the marginals of the Euler ODE step.

Flow-matching convention of this project: ``x_s = (1 - s) x0 + s e`` (s = 1 pure noise, s = 0 data),
the model predicts the velocity ``v = e - x0`` and the Euler ODE step is ``x_{s'} = x_s + (s' - s) v``.
Flow-GRPO (Liu et al. 2025) turns that step into an SDE step with the same marginals, so that each
step is a Gaussian policy whose log-probability can be optimised:

    ds      = s' - s  (< 0)
    sigma_t = a * sqrt(s / (1 - s))
    mean    = x + (v + sigma_t^2 / (2 s) * (x + (1 - s) v)) * ds
    next    = mean + sigma_t * sqrt(-ds) * noise,   noise ~ N(0, I)
    log_prob = log N(next; mean, (sigma_t sqrt(-ds))^2)

Guards: at s = 1 sigma_t is infinite. By default the step does what Flow-GRPO does (it replaces
s by the second grid point, ``sigmas[1]``, in the ``1 - s`` denominator when s == 1): where s >= 1
the denominator uses s' instead, and it is always clamped to at most ``1 - 1e-4``; an explicit
``eps`` clamps it to ``1 - eps`` instead. The
drift coefficient ``sigma_t^2 / (2 s)`` is computed in the closed form ``a^2 / (2 (1 - s))`` so
s -> 0 never divides by zero, and s' = 0 (the last step) is an ordinary step. A step with zero
standard deviation (``noise_scale = 0`` or ``ds = 0``) is deterministic: ``next = mean`` and its
log-probability is reported as 0.

The log-probability is **averaged** over all non-batch dimensions (a per-element mean, as in
Flow-GRPO), so ratios ``exp(logp_new - logp_old)`` stay well conditioned whatever the video size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _per_sample(t: float | Tensor, like: Tensor) -> Tensor:
    """A scalar or (B,) noise level as a tensor broadcastable against ``like`` (B, ...)."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    if t.shape != (like.shape[0],):
        raise ValueError(f"noise level must be a scalar or of shape ({like.shape[0]},), got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def sde_std(s: float | Tensor, s_next: float | Tensor, noise_scale: float, like: Tensor,
            eps: float | None = None) -> tuple[Tensor, Tensor]:
    """(sigma_t, std) broadcastable against ``like``: ``sigma_t = a sqrt(s / (1 - min(s, 1 - eps)))``
    and the step's standard deviation ``std = sigma_t sqrt(-ds)``."""
    s_b, sn_b = _per_sample(s, like), _per_sample(s_next, like)
    ds = sn_b - s_b
    s_den = _clamped_s(s_b, ds, eps)
    sigma_t = noise_scale * torch.sqrt(s_b / (1.0 - s_den))
    return sigma_t, sigma_t * torch.sqrt(torch.clamp(-ds, min=0.0))


def _clamped_s(s_b: Tensor, ds: Tensor, eps: float | None) -> Tensor:
    """The ``s`` used in the ``1 - s`` denominator of sigma_t (see the module docstring)."""
    if eps is not None:
        return torch.clamp(s_b, max=1.0 - float(eps))
    s_next = s_b + ds
    return torch.clamp(torch.where(s_b >= 1.0, s_next, s_b), max=1.0 - 1e-4)


def sde_step(
    x: Tensor,
    v: Tensor,
    s: float | Tensor,
    s_next: float | Tensor,
    noise_scale: float,
    noise: Tensor | None = None,
    prev_sample: Tensor | None = None,
    generator: torch.Generator | None = None,
    eps: float | None = None,
    std: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One Flow-GRPO SDE step from noise level ``s`` to ``s_next`` (< s).

    Args:
        x: current sample x_s, (B, ...).
        v: predicted velocity at (x, s), same shape.
        s, s_next: noise levels, scalars or (B,).
        noise_scale: ``a`` (about 0.7); 0 gives the Euler ODE step.
        noise: standard normal noise to use (default: drawn with ``generator``).
        prev_sample: when given, the step is not sampled: ``next = prev_sample`` and the returned
            log-probability is that of ``prev_sample`` under the current mean (used to re-score
            stored rollouts under the updated policy).
        generator: torch generator for the noise.
        eps: the ``1 - s`` denominator uses ``min(s, 1 - eps)``; default: s' where s == 1 (see module doc).
        std: the step's standard deviation to use instead of ``sigma_t sqrt(-ds)`` (broadcastable against
            ``x``; e.g. that one masked to where exploration matters); elements with 0 are deterministic.

    Returns:
        ``(next_sample, log_prob (B,), mean, std)``; ``std`` is broadcastable against ``x``
        (shape (B, 1, ..., 1), or that of the ``std`` passed in).
    """
    if v.shape != x.shape:
        raise ValueError(f"velocity shape {tuple(v.shape)} differs from sample shape {tuple(x.shape)}")
    s_b, sn_b = _per_sample(s, x), _per_sample(s_next, x)
    ds = sn_b - s_b
    s_den = _clamped_s(s_b, ds, eps)
    sigma_t = noise_scale * torch.sqrt(s_b / (1.0 - s_den))
    drift_coef = (noise_scale**2) / (2.0 * (1.0 - s_den))  # = sigma_t^2 / (2 s), finite at s = 0
    mean = x + (v + drift_coef * (x + (1.0 - s_b) * v)) * ds
    if std is None:
        std = sigma_t * torch.sqrt(torch.clamp(-ds, min=0.0))
    if prev_sample is not None:
        if prev_sample.shape != x.shape:
            raise ValueError(f"prev_sample shape {tuple(prev_sample.shape)} differs from {tuple(x.shape)}")
        nxt = prev_sample
    else:
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        nxt = mean + std * noise
    log_prob = gaussian_log_prob(nxt, mean, std)
    return nxt, log_prob, mean, std


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Per-element Gaussian log-density averaged over non-batch dims, (B,); 0 where ``std == 0``."""
    safe = torch.where(std > 0, std, torch.ones_like(std))
    lp = -(x - mean) ** 2 / (2.0 * safe**2) - torch.log(safe) - _LOG_SQRT_2PI
    lp = torch.where(std > 0, lp, torch.zeros_like(lp))
    return lp.reshape(lp.shape[0], -1).mean(dim=1)


def sde_kl(mean: Tensor, mean_ref: Tensor, std: Tensor) -> Tensor:
    """KL between two SDE steps with the same std, on the means: ``|m - m_ref|^2 / (2 std^2)``,
    averaged over non-batch dims (consistent with :func:`gaussian_log_prob`), (B,); 0 where std == 0."""
    safe = torch.where(std > 0, std, torch.ones_like(std))
    kl = (mean - mean_ref) ** 2 / (2.0 * safe**2)
    kl = torch.where(std > 0, kl, torch.zeros_like(kl))
    return kl.reshape(kl.shape[0], -1).mean(dim=1)


def sde_timesteps(n_steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Noise-level grid ``1 = s_0 > s_1 > ... > s_N = 0``: the Euler sampler's grid
    (:func:`ml.models.flow_matching.timestep_grid`: uniform, then ``s' = shift s / (1 + (shift - 1) s)``)."""
    from ml.models.flow_matching import timestep_grid

    return timestep_grid(n_steps, shift, device=device)

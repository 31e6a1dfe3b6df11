"""Traj-GDPO rollouts: the evaluation's sampler made stochastic with the Flow-GRPO SDE step.

A rollout starts where the evaluation's sampler starts (``model.source_sample`` of the initial noise
times ``init_noise_scale``; :func:`ml.models.sampling.generate` does the same with
``EvaluationConfig.video_noise_scale``) and takes ``n_steps`` SDE steps (:func:`ml.models.sde.sde_step`)
on the evaluation's time grid. With ``noise_scale = 0`` it is exactly the evaluation's Euler sampler. From
the default start (no ``model.cfg.source_noise``, ``init_noise_scale = 0``: x = 0 at s = 1) the SDE step's
drift correction vanishes, so the mean of a one-step rollout *is* the evaluated drawing and the rollout is
that drawing plus Gaussian exploration. Every step's sample, mean, standard deviation and log-probability
is kept (no gradients) for the update. The log-probability is averaged over all elements of the sample
(masked ones contribute 0), as in Flow-GRPO.

``exploration_radius_px`` restricts the exploration noise to the pixels within that many pixels of
what is drawn (the signaling prior's path and head, or the policy's own drawing, above the layer's
mid-value): elsewhere the step is deterministic. A drawing layer is mostly empty background, where
noise changes nothing a reward reads but adds variance to the policy gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ml.models.data import to_uint8_frames
from ml.models.sde import sde_step, sde_timesteps


@dataclass
class Rollout:
    """Recorded SDE trajectories of R rollouts (N steps)."""

    samples: Tensor  # (N + 1, R, C, k, h, w): the start ... the final sample
    means: Tensor  # (N, R, C, k, h, w): SDE mean of each step under the sampling policy
    stds: Tensor  # (N, R, C, k, h, w) or broadcastable: each step's exploration standard deviation
    log_probs: Tensor  # (N, R): log-probability of each step under the sampling policy
    grid: Tensor  # (N + 1,) noise levels
    cond: Tensor  # the encoded condition (``model.encode_condition``)
    videos: np.ndarray  # (R, K, H, W, 3) uint8: the final samples composited to RGB (what the rewards read)


def exploration_mask(prior: Tensor, mean: Tensor, radius_px: int) -> Tensor:
    """1 within ``radius_px`` pixels (a square) of a drawn pixel of ``prior`` or ``mean``, else 0 (same shape).

    Both are model-space layers (B, C, k, h, w) in [-1, 1]; a pixel is drawn above 0 (alpha one half)
    in the policy's mean or above -0.5 in the prior, whose path and head blobs have soft edges.
    """
    drawn = ((prior > -0.5) | (mean > 0.0)).to(mean.dtype)
    b, c, k, h, w = drawn.shape
    grown = F.max_pool2d(drawn.reshape(b, c * k, h, w), 2 * radius_px + 1, stride=1, padding=radius_px)
    return grown.reshape(b, c, k, h, w)


def velocity(model: torch.nn.Module, x: Tensor, s: Tensor, cond_image: Tensor, tokens: Tensor | None,
             token_mask: Tensor | None, cond: Tensor) -> Tensor:
    """The model's velocity at (x, s) as float32, from the pre-encoded condition."""
    return model(x, s, cond_image, tokens, token_mask, cond=cond).float()


@torch.no_grad()
def sample_rollouts(
    model: torch.nn.Module,
    cond_image: Tensor,
    frames: int,
    n_steps: int,
    noise_scale: float,
    generator: torch.Generator | None = None,
    tokens: Tensor | None = None,
    token_mask: Tensor | None = None,
    shift: float = 1.0,
    init_noise_scale: float = 0.0,
    exploration_radius_px: int | None = None,
    group_size: int = 1,
) -> Rollout:
    """Sample one video per row of ``cond_image`` (R, 3, H, W) with the SDE sampler; see the module docstring.

    ``model`` is a :class:`ml.models.backbone.VideoFlowModel` (or any module with its ``latent_shape``,
    ``encode_condition``, ``source_sample``, ``prior_model_space`` and ``decode_video``).
    """
    device = cond_image.device
    r = cond_image.shape[0]
    shape = model.latent_shape(frames, cond_image.shape[-1])
    gdev = generator.device if generator is not None else device
    noise0 = torch.randn((r, *shape), generator=generator, device=gdev).to(device)
    if r % group_size:
        raise ValueError(f"{r} rollout rows do not make groups of {group_size}")
    g = group_size
    reps = slice(0, r, g)
    cond = model.encode_condition(cond_image[reps], _rows(tokens, reps), _rows(token_mask, reps),
                                  frames=frames).repeat_interleave(g, dim=0)
    x = model.source_sample(cond, noise0 * float(init_noise_scale))
    prior = None
    if exploration_radius_px is not None:
        if getattr(model, "latent", False) or getattr(model.cfg, "target", "layer") != "layer":
            raise ValueError("exploration_radius_px masks the exploration noise around a pixel drawing layer; this "
                             "model samples in a latent or RGB space (set gdpo.exploration_radius_px = None)")
        prior = model.prior_model_space(cond.expand(-1, -1, shape[1], -1, -1))
    grid = sde_timesteps(n_steps, shift, device=device)
    samples, means, stds, logps = [x], [], [], []
    for i in range(n_steps):
        s, sn = grid[i].expand(r), grid[i + 1].expand(r)
        if i == 0 and init_noise_scale == 0.0:
            v = velocity(model, x[reps], s[reps], cond_image[reps], _rows(tokens, reps), _rows(token_mask, reps),
                         cond[reps]).repeat_interleave(g, dim=0)
        else:
            v = velocity(model, x, s, cond_image, tokens, token_mask, cond)
        noise = torch.randn(x.shape, generator=generator, device=gdev).to(device)
        std = None
        if prior is not None:  # the mask needs the step's mean first
            _, _, mean, std = sde_step(x, v, s, sn, noise_scale)
            std = std * exploration_mask(prior, mean, exploration_radius_px)
        x, lp, mean, std = sde_step(x, v, s, sn, noise_scale, noise=noise, std=std)
        samples.append(x), means.append(mean), stds.append(std.expand_as(mean)), logps.append(lp)
    videos = to_uint8_frames(model.decode_video(x, cond))
    return Rollout(torch.stack(samples), torch.stack(means), torch.stack(stds), torch.stack(logps), grid, cond, videos)


def _rows(t: Tensor | None, rows: slice) -> Tensor | None:
    return None if t is None else t[rows]

"""The Traj-GDPO policy objective: the PPO clipped ratio loss over informative rows, plus beta times the KL.

Pure functions on tensors; :mod:`ml.train.gdpo.module` calls them per trained denoising step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PolicyLoss:
    """One step's objective and its diagnostics (``loss`` carries the gradient; the rest are detached)."""

    loss: Tensor  # policy_loss + beta * kl, scalar
    policy_loss: Tensor  # scalar
    kl: Tensor  # scalar
    clip_frac: Tensor  # share of kept rows whose ratio left [1 - c, 1 + c]
    ratio_max_dev: Tensor  # max |ratio - 1| over kept rows


def ppo_clip_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_range: float,
                  kl: Tensor, beta: float, keep: Tensor | None = None) -> PolicyLoss:
    """``mean_kept max(-A r, -A clip(r, 1 - c, 1 + c)) + beta mean_kept KL``, ``r = exp(logp - logp_old)``.

    ``log_prob``, ``old_log_prob``, ``advantages``, ``kl``: (R,). ``keep`` (R,) bool selects the rows that
    enter the means (default: all); a step without a kept row has loss 0 (and no gradient).
    """
    keep = torch.ones_like(advantages, dtype=torch.bool) if keep is None else keep.bool()
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    w = keep.to(ratio.dtype) / keep.sum().clamp_min(1)
    policy_loss = (torch.maximum(unclipped, clipped) * w).sum()
    kl_mean = (kl * w).sum()
    with torch.no_grad():
        dev = (ratio - 1.0).abs()
        clip_frac = ((dev > clip_range).to(ratio.dtype) * w).sum()
        ratio_max_dev = dev[keep].max() if bool(keep.any()) else torch.zeros((), device=ratio.device)
    return PolicyLoss(policy_loss + beta * kl_mean, policy_loss.detach(), kl_mean.detach(), clip_frac, ratio_max_dev)

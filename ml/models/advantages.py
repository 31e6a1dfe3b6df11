"""Group-relative advantages of Traj-GDPO (DESIGN section 9): GDPO, plain GRPO, and which groups carry signal.

Rows are rollouts; ``group_ids`` (R,) says which condition each rollout was sampled for. A group whose
rewards are all equal says nothing about which rollout was better: :func:`informative_rows` marks the
rows of the other groups, and both advantage functions give exactly 0 to the rest and normalise over
the informative rows only (as dynamic sampling does in DAPO-style trainers), so a constant group never
receives a non-zero advantage from the batch normalisation.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor


def group_stats(x: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row mean and population standard deviation of ``x`` over the row's group, both (R,) float64."""
    _, inv = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    xf = x.double()
    zeros = torch.zeros(n_groups, dtype=torch.float64, device=x.device)
    count = zeros.index_add(0, inv, torch.ones_like(xf))
    mean = zeros.index_add(0, inv, xf) / count
    var = zeros.index_add(0, inv, (xf - mean[inv]) ** 2) / count
    return mean[inv], var.sqrt()[inv]


def informative_rows(rewards: Mapping[str, Tensor], group_ids: Tensor) -> Tensor:
    """Bool (R,): the row's group has at least one reward that is not constant inside it."""
    keep = torch.zeros(group_ids.shape, dtype=torch.bool, device=group_ids.device)
    for r in rewards.values():
        keep |= group_stats(torch.as_tensor(r, device=group_ids.device), group_ids)[1] > 0
    return keep


def _in_group(r: Tensor, group_ids: Tensor, eps: float) -> Tensor:
    mean, std = group_stats(r, group_ids)
    # a constant reward in a group gives exactly 0 (not rounding noise divided by eps)
    return torch.where(std > 0, r.double() - mean, torch.zeros_like(mean)) / (std + eps)


def _checked(rewards: Mapping[str, Tensor], group_ids: Tensor, fn: str) -> dict[str, Tensor]:
    if not rewards:
        raise ValueError(f"{fn} needs at least one reward")
    out = {}
    for name, r in rewards.items():
        r = torch.as_tensor(r, device=group_ids.device)
        if r.shape != group_ids.shape:
            raise ValueError(f"{fn}: reward '{name}' has shape {tuple(r.shape)}, group_ids {tuple(group_ids.shape)}")
        out[name] = r
    return out


def gdpo_advantages(rewards: Mapping[str, Tensor], group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """GDPO advantages (R,) float32: per reward ``A_k = (r_k - mean_group r_k) / (std_group r_k + eps)``,
    ``A = sum_k A_k``, then ``(A - mean A) / (std A + eps)`` over the informative rows; 0 elsewhere.

    Standard deviations are population ones (``ddof = 0``). A reward constant inside a group contributes
    exactly 0 there; a batch without an informative row gives all zeros (no NaN).
    """
    rewards = _checked(rewards, group_ids, "gdpo_advantages")
    total = sum(_in_group(r, group_ids, eps) for r in rewards.values())
    keep = informative_rows(rewards, group_ids)
    out = torch.zeros_like(total)
    sel = total[keep]
    if sel.numel() > 1 and float(sel.std(unbiased=False)) > 0:
        out[keep] = (sel - sel.mean()) / (sel.std(unbiased=False) + eps)
    return out.float()


def grpo_advantages(rewards: Mapping[str, Tensor], group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """Plain GRPO advantages (the ablation), (R,) float32: the summed reward normalised once, inside each group."""
    rewards = _checked(rewards, group_ids, "grpo_advantages")
    total = sum(r.double() for r in rewards.values())
    return _in_group(total, group_ids, eps).float()


ADVANTAGES: dict[str, Callable[[Mapping[str, Tensor], Tensor, float], Tensor]] = {
    "gdpo": gdpo_advantages,
    "grpo": grpo_advantages,
}

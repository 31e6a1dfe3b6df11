"""Traj-GDPO: reinforcement learning of the video flow model from verifiable rewards (DESIGN section 9).

One GDPO iteration, for a batch of B conditions:

1. **Rollouts** - each condition is repeated G times (a *group*) and sampled with the Flow-GRPO SDE
   sampler (:func:`ml.models.sde.sde_step`), recording every step's sample, mean and
   log-probability under the current policy (no gradients).
2. **Rewards** - the final videos are decoded to pixels and scored against the truth with the
   distance, direction and connectivity rewards (:func:`ml.rewards.compute_rewards`).
3. **Advantages** - GDPO (:func:`gdpo_advantages`: each reward normalised inside its group, summed,
   then normalised over the batch) or plain GRPO (:func:`grpo_advantages`, the ablation), clipped
   to ``+-adv_clip``.
4. **Update** - for the training denoising steps, the stored step is re-scored under the current
   policy; the loss is the PPO clipped ratio objective with ratio ``exp(logp - logp_old)`` plus
   ``beta`` times the KL to the frozen reference (SFT) model computed on the SDE means,
   ``|mean_theta - mean_ref|^2 / (2 (sigma_t sqrt(-ds))^2)``. Gradients are accumulated over the
   training steps and applied once per inner epoch (``inner_epochs`` > 1 reuses the rollouts, and
   only then can the ratio leave 1 and the clip act).

The policy is any module with the :class:`ml.models.backbone.VideoFlowModel` call
``policy(noisy (B, C, k, h, w), s (B,), cond_image (B, 3, H, W), tokens, token_mask) -> velocity``.
When it also has ``latent_shape``, ``encode_condition`` and ``decode_video`` (the VideoFlowModel
does) rollouts run in its model space (pixels, or VAE latents for the pretrained preset) and are
decoded to pixels for the rewards; otherwise the model space is the pixel video (3, K, H, W).
Dropout is kept off (the policy stays in eval mode) so that an unchanged policy gives ratio 1.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import lightning as L
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ml.models.sde import sde_kl, sde_step, sde_timesteps
from ml.rewards import REWARD_KEYS, RewardConfig, compute_rewards

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]
"""``reward_fn(gen_videos uint8 (B, K, H, W, 3), true_head_px (B, K, 2), metres_per_pixel (B,))``."""


# ====================================================================== config
class GDPOConfig(BaseModel):
    """Traj-GDPO hyper-parameters (defaults: the ``demo`` profile, CPU)."""

    model_config = ConfigDict(extra="forbid")

    group_size: int = Field(4, ge=2, description="G rollouts per condition")
    conditions_per_step: int = Field(2, ge=1, description="conditions (groups) per GDPO iteration")
    n_steps: int = Field(10, ge=1, description="SDE sampling steps of a rollout")
    sample_shift: float = Field(1.0, gt=0, description="time shift of the sampling grid")
    noise_scale: float = Field(0.7, gt=0, description="a: sigma_t = a sqrt(s / (1 - s))")
    clip_range: float = Field(0.2, gt=0, description="PPO clip: ratio kept in [1 - c, 1 + c]")
    beta: float = Field(0.04, ge=0, description="weight of the KL to the reference (SFT) model; 0 = ablation")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    steps: int = Field(20, ge=1, description="GDPO iterations (rollout + update); 20 keeps 17-frame demo rollouts near 2.5 minutes")
    inner_epochs: int = Field(1, ge=1, description="updates per rollout batch (ratio != 1 only from the 2nd)")
    advantage: Literal["gdpo", "grpo"] = "gdpo"
    rewards: tuple[str, ...] = Field(REWARD_KEYS, description="rewards that enter the advantage")
    train_timesteps: list[int] | None = Field(
        None, description="indices (0 = first, noisiest step) of the denoising steps trained on; None = all")
    train_timestep_fraction: float = Field(
        1.0, gt=0, le=1, description="<1: a random subset of that share of the training steps each iteration")
    adv_clip: float = Field(5.0, gt=0, description="advantages are clipped to +-adv_clip")
    eps: float = Field(1e-6, gt=0, description="added to group/batch standard deviations")
    grad_clip: float | None = Field(1.0, description="gradient norm clip (None: off)")
    micro_batch_size: int | None = Field(None, ge=1, description="rows per forward/backward in the update")
    reward: RewardConfig = Field(default_factory=RewardConfig)
    # before/after evaluation (deterministic Euler sampler, as at inference)
    n_eval: int = Field(8, ge=0, description="validation samples scored before and after training (0: skip)")
    eval_steps: int = Field(20, ge=1, description="Euler steps of the evaluation sampler")
    eval_split: str = "val"
    # infrastructure
    seed: int = 0
    accelerator: str = "auto"
    devices: str | int = 1
    precision: str | None = Field(None, description="Lightning precision; None: bf16-mixed on GPU, 32-true on CPU")
    experiment_name: str = "sig2gps-gdpo"
    run_name: str | None = None
    log_every_n_steps: int = Field(1, ge=1)
    progress_bar: bool = True

    @model_validator(mode="after")
    def _check(self) -> "GDPOConfig":
        unknown = set(self.rewards) - set(REWARD_KEYS)
        if unknown or not self.rewards:
            raise ValueError(f"gdpo.rewards must be a non-empty subset of {REWARD_KEYS}, got {self.rewards}")
        if self.train_timesteps is not None:
            bad = [t for t in self.train_timesteps if not 0 <= t < self.n_steps]
            if bad or not self.train_timesteps:
                raise ValueError(f"gdpo.train_timesteps {self.train_timesteps} must be non-empty indices in [0, {self.n_steps})")
        return self


def gdpo_profile(name: str, **overrides: Any) -> GDPOConfig:
    """The GDPOConfig of a profile (``ci``, ``demo``, ``gpu``) plus field overrides (sizes only)."""
    table: dict[str, dict[str, Any]] = {
        "ci": dict(group_size=2, conditions_per_step=2, n_steps=4, steps=2, n_eval=2, eval_steps=4,
                   progress_bar=False),
        "demo": {},
        "gpu": dict(group_size=8, conditions_per_step=4, n_steps=16, steps=300, inner_epochs=2, n_eval=32,
                    eval_steps=30, micro_batch_size=16, lr=3e-5, log_every_n_steps=5),
    }
    if name not in table:
        raise ValueError(f"unknown GDPO profile '{name}' (choose one of {', '.join(table)})")
    values = dict(table[name])
    values.update(overrides)
    return GDPOConfig.model_validate(values)


# ====================================================================== advantages
def _group_stats(x: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row mean and population std of ``x`` over the row's group, both (B,)."""
    _, inv = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    xf = x.double()
    count = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(0, inv, torch.ones_like(xf))
    mean = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(0, inv, xf) / count
    dev2 = (xf - mean[inv]) ** 2
    var = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(0, inv, dev2) / count
    return mean[inv], var.sqrt()[inv]


def _normalise_in_groups(r: Tensor, group_ids: Tensor, eps: float) -> Tensor:
    mean, std = _group_stats(r, group_ids)
    # a constant reward in a group gives exactly 0 (not 0/eps noise from rounding)
    dev = torch.where(std > 0, r.double() - mean, torch.zeros_like(mean))
    return dev / (std + eps)


def _normalise_batch(a: Tensor, eps: float) -> Tensor:
    std = a.std(unbiased=False) if a.numel() > 1 else torch.zeros((), dtype=a.dtype, device=a.device)
    if not torch.isfinite(std) or float(std) == 0.0:
        return torch.zeros_like(a)
    return (a - a.mean()) / (std + eps)


def gdpo_advantages(rewards: dict[str, Tensor], group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """GDPO advantages (B,): per reward ``A_k = (r_k - mean_group r_k) / (std_group r_k + eps)``,
    ``A = sum_k A_k``, then ``(A - mean(A)) / (std(A) + eps)`` over the whole batch.

    Standard deviations are population ones (``ddof = 0``). A reward that is constant inside a group
    contributes exactly 0 there; an all-zero A stays 0 (no NaN).
    """
    if not rewards:
        raise ValueError("gdpo_advantages needs at least one reward")
    total: Tensor | None = None
    for name, r in rewards.items():
        r = torch.as_tensor(r)
        if r.shape != group_ids.shape:
            raise ValueError(f"reward '{name}' has shape {tuple(r.shape)}, group_ids {tuple(group_ids.shape)}")
        a_k = _normalise_in_groups(r, group_ids, eps)
        total = a_k if total is None else total + a_k
    return _normalise_batch(total, eps).float()


def grpo_advantages(rewards: dict[str, Tensor], group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """Plain GRPO advantages (the ablation): the summed reward normalised inside each group (B,)."""
    if not rewards:
        raise ValueError("grpo_advantages needs at least one reward")
    total = sum(torch.as_tensor(r).double() for r in rewards.values())
    return _normalise_in_groups(total, group_ids, eps).float()


ADVANTAGES: dict[str, Callable[[dict[str, Tensor], Tensor, float], Tensor]] = {
    "gdpo": gdpo_advantages,
    "grpo": grpo_advantages,
}


# ====================================================================== rollouts
def model_space_shape(policy: nn.Module, frames: int, resolution: int) -> tuple[int, int, int, int]:
    """(C, k, h, w) the policy samples in: its ``latent_shape`` if it has one, else pixels (3, K, H, W)."""
    if hasattr(policy, "latent_shape"):
        return tuple(policy.latent_shape(frames, resolution))  # type: ignore[return-value]
    return (3, frames, resolution, resolution)


def _encode_condition(policy: nn.Module, cond_image: Tensor, tokens: Tensor | None = None,
                      token_mask: Tensor | None = None, frames: int | None = None) -> Tensor | None:
    if not hasattr(policy, "encode_condition"):
        return None
    return policy.encode_condition(cond_image, tokens, token_mask, frames=frames)


def _decode(policy: nn.Module, x: Tensor, cond: Tensor | None) -> Tensor:
    return policy.decode_video(x, cond) if hasattr(policy, "decode_video") else x.clamp(-1.0, 1.0)


def policy_velocity(policy: nn.Module, x: Tensor, s: Tensor, cond_image: Tensor, tokens: Tensor | None = None,
                    token_mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
    """The velocity of ``policy`` at (x, s), as float32 (``cond`` is the pre-encoded condition, if any)."""
    if cond is not None:
        v = policy(x, s, cond_image, tokens, token_mask, cond=cond)
    else:
        v = policy(x, s, cond_image, tokens, token_mask)
    return v.float()


def video_to_uint8(video: Tensor) -> np.ndarray:
    """Pixels (B, 3, K, H, W) in [-1, 1] -> uint8 (B, K, H, W, 3)."""
    v = ((video.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return v.permute(0, 2, 3, 4, 1).cpu().numpy()


@dataclass
class Rollout:
    """Recorded SDE trajectories of a batch of rollouts (R = B * G rows)."""

    samples: Tensor  # (N + 1, R, C, k, h, w): x_{s_0} (noise) ... x_{s_N} (final)
    means: Tensor  # (N, R, C, k, h, w): SDE mean of each step
    log_probs: Tensor  # (N, R): log-probability of each step under the sampling policy
    grid: Tensor  # (N + 1,) noise levels
    videos: np.ndarray  # (R, K, H, W, 3) uint8 decoded final samples


@torch.no_grad()
def sample_rollouts(
    policy: nn.Module,
    cond_image: Tensor,
    frames: int,
    n_steps: int,
    noise_scale: float,
    generator: torch.Generator | None = None,
    tokens: Tensor | None = None,
    token_mask: Tensor | None = None,
    shift: float = 1.0,
) -> Rollout:
    """Sample one video per row of ``cond_image`` with the SDE sampler (``noise_scale = 0``: Euler ODE).

    Records every step's sample, mean and log-probability; returns the decoded uint8 videos too.
    """
    device = cond_image.device
    r = cond_image.shape[0]
    shape = model_space_shape(policy, frames, cond_image.shape[-1])
    gdev = generator.device if generator is not None else device
    x = torch.randn((r, *shape), generator=generator, device=gdev).to(device)
    cond = _encode_condition(policy, cond_image, tokens, token_mask, frames)
    if hasattr(policy, "source_sample"):  # the flow may start from the signaling prior plus noise
        x = policy.source_sample(cond, x)
    grid = sde_timesteps(n_steps, shift, device=device)
    samples, means, logps = [x], [], []
    for i in range(n_steps):
        s, sn = grid[i].expand(r), grid[i + 1].expand(r)
        v = policy_velocity(policy, x, s, cond_image, tokens, token_mask, cond)
        noise = torch.randn(x.shape, generator=generator, device=gdev).to(device)
        x, lp, mean, _ = sde_step(x, v, s, sn, noise_scale, noise=noise)
        samples.append(x)
        means.append(mean)
        logps.append(lp)
    videos = video_to_uint8(_decode(policy, x, cond))
    return Rollout(torch.stack(samples), torch.stack(means), torch.stack(logps), grid, videos)


def _rewards_to_tensors(rewards: dict[str, np.ndarray], keys: tuple[str, ...], device: torch.device) -> dict[str, Tensor]:
    missing = [k for k in keys if k not in rewards]
    if missing:
        raise KeyError(f"reward function did not return {missing} (got {sorted(rewards)})")
    return {k: torch.as_tensor(np.asarray(rewards[k], dtype=np.float64), device=device) for k in keys}


# ====================================================================== Lightning module
class GDPOModule(L.LightningModule):
    """Traj-GDPO fine-tuning of a velocity model with manual optimisation (see the module docstring).

    A batch is a dict with ``cond`` (B, 3, H, W) float in [-1, 1], ``true_head_px`` (B, K, 2) pixel
    (col, row) (NaN where missing), ``mpp`` (B,) metres per pixel, and optionally ``tokens`` /
    ``token_mask`` for the signaling-token ablation.
    """

    def __init__(self, policy: nn.Module, cfg: GDPOConfig, reference: nn.Module | None = None,
                 reward_fn: RewardFn | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.policy = policy
        self.policy.eval()
        if cfg.beta > 0:
            ref = reference if reference is not None else copy.deepcopy(policy)
            ref.requires_grad_(False)
            ref.eval()
            self.reference: nn.Module | None = ref
        else:
            self.reference = None
        self.reward_fn: RewardFn = reward_fn or partial(compute_rewards, cfg=cfg.reward)
        self.history: list[dict[str, float]] = []
        self._generator: torch.Generator | None = None
        self._rng = np.random.default_rng(cfg.seed)

    # -------------------------------------------------------------- plumbing
    def train(self, mode: bool = True) -> "GDPOModule":
        """Lightning switches modules to train mode; GDPO keeps dropout off for exact ratios."""
        super().train(mode)
        self.policy.eval()
        if self.reference is not None:
            self.reference.eval()
        return self

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def _gen(self) -> torch.Generator:
        if self._generator is None:
            dev = self.device if self.device.type == "cuda" else torch.device("cpu")
            self._generator = torch.Generator(device=dev).manual_seed(self.cfg.seed)
        return self._generator

    def _backward(self, loss: Tensor) -> None:
        if self._trainer is not None:
            self.manual_backward(loss)
        else:
            loss.backward()

    def _train_steps(self, n_steps: int) -> list[int]:
        steps = list(self.cfg.train_timesteps) if self.cfg.train_timesteps is not None else list(range(n_steps))
        if self.cfg.train_timestep_fraction < 1.0:
            k = max(1, int(round(self.cfg.train_timestep_fraction * len(steps))))
            steps = sorted(self._rng.choice(steps, size=k, replace=False).tolist())
        return steps

    # -------------------------------------------------------------- one iteration
    def gdpo_iteration(self, batch: dict[str, Any], optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
        """Rollouts, rewards, advantages and ``inner_epochs`` updates for one batch; returns the metrics.

        Usable without a Trainer (pass an optimizer); ``training_step`` calls it with Lightning's.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        cond = batch["cond"].to(self.device)
        b, g = cond.shape[0], cfg.group_size
        true_head = np.asarray(torch.as_tensor(batch["true_head_px"]).cpu(), dtype=np.float64)
        mpp = np.asarray(torch.as_tensor(batch["mpp"]).cpu(), dtype=np.float64).reshape(-1)
        frames = true_head.shape[1]
        rep = lambda t: None if t is None else t.to(self.device).repeat_interleave(g, dim=0)  # noqa: E731
        cond_r, tok_r, tmask_r = rep(cond), rep(batch.get("tokens")), rep(batch.get("token_mask"))
        group_ids = torch.arange(b, device=self.device).repeat_interleave(g)

        # 1. rollouts (no grad) with the current policy
        ro = sample_rollouts(self.policy, cond_r, frames, cfg.n_steps, cfg.noise_scale, self._gen(), tok_r, tmask_r,
                             cfg.sample_shift)
        # 2. rewards against the truth
        raw = self.reward_fn(ro.videos, np.repeat(true_head, g, axis=0), np.repeat(mpp, g))
        rewards = _rewards_to_tensors(raw, cfg.rewards, self.device)
        # 3. advantages
        adv_raw = ADVANTAGES[cfg.advantage](rewards, group_ids, cfg.eps)
        adv = adv_raw.clamp(-cfg.adv_clip, cfg.adv_clip).to(self.device)

        # 4. updates
        opt = optimizer if optimizer is not None else self.optimizers()
        train_steps = self._train_steps(cfg.n_steps)
        n_rows = cond_r.shape[0]
        mb = cfg.micro_batch_size or n_rows
        cond_enc = _encode_condition(self.policy, cond_r, tok_r, tmask_r, frames)
        sums = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "ratio_dev": 0.0}
        n_terms = 0
        for _ in range(cfg.inner_epochs):
            opt.zero_grad(set_to_none=True)
            for j in train_steps:
                s, sn = ro.grid[j], ro.grid[j + 1]
                for lo in range(0, n_rows, mb):
                    sl = slice(lo, min(lo + mb, n_rows))
                    rows = sl.stop - sl.start
                    x, x_next, lp_old = ro.samples[j, sl], ro.samples[j + 1, sl], ro.log_probs[j, sl]
                    c_img = cond_r[sl]
                    c_enc = None if cond_enc is None else cond_enc[sl]
                    tk = None if tok_r is None else tok_r[sl]
                    tm = None if tmask_r is None else tmask_r[sl]
                    v = policy_velocity(self.policy, x, s.expand(rows), c_img, tk, tm, c_enc)
                    _, lp, mean, std = sde_step(x, v, s.expand(rows), sn.expand(rows), cfg.noise_scale,
                                                prev_sample=x_next)
                    ratio = torch.exp(lp - lp_old)
                    a = adv[sl]
                    unclipped = -a * ratio
                    clipped = -a * torch.clamp(ratio, 1.0 - cfg.clip_range, 1.0 + cfg.clip_range)
                    policy_loss = torch.maximum(unclipped, clipped).mean()
                    if self.reference is not None:
                        with torch.no_grad():
                            v_ref = policy_velocity(self.reference, x, s.expand(rows), c_img, tk, tm, c_enc)
                            _, _, mean_ref, _ = sde_step(x, v_ref, s.expand(rows), sn.expand(rows), cfg.noise_scale,
                                                         prev_sample=x_next)
                        kl = sde_kl(mean, mean_ref, std).mean()
                    else:
                        kl = torch.zeros((), device=self.device)
                    loss = policy_loss + cfg.beta * kl
                    weight = rows / n_rows / len(train_steps)
                    self._backward(loss * weight)
                    with torch.no_grad():
                        sums["loss"] += float(loss) * weight
                        sums["policy_loss"] += float(policy_loss) * weight
                        sums["kl"] += float(kl) * weight
                        sums["clip_frac"] += float(((ratio - 1.0).abs() > cfg.clip_range).float().mean()) * weight
                        sums["ratio_dev"] += float((ratio - 1.0).abs().max())
                        n_terms += 1
            if cfg.grad_clip is not None:
                params = [p for p in self.policy.parameters() if p.requires_grad and p.grad is not None]
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)) if params else 0.0
            else:
                grad_norm = float("nan")
            opt.step()

        ep = float(cfg.inner_epochs)
        metrics: dict[str, float] = {f"reward/{k}": float(np.mean(v)) for k, v in raw.items()}
        metrics.update({f"reward_std_in_group/{k}": float(_group_stats(rewards[k], group_ids)[1].mean())
                        for k in rewards})
        metrics.update({
            "loss": sums["loss"] / ep, "policy_loss": sums["policy_loss"] / ep, "kl": sums["kl"] / ep,
            "clip_frac": sums["clip_frac"] / ep, "ratio_max_dev": sums["ratio_dev"] / max(n_terms, 1),
            "adv_mean": float(adv_raw.mean()), "adv_std": float(adv_raw.std(unbiased=False)),
            "adv_clipped_frac": float((adv_raw.abs() > cfg.adv_clip).float().mean()),
            "grad_norm": grad_norm, "iteration_s": time.perf_counter() - t0,
        })
        metrics["reward/total"] = float(sum(metrics[f"reward/{k}"] for k in cfg.rewards))
        self.history.append(metrics)
        return metrics

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        metrics = self.gdpo_iteration(batch)
        self.log_dict({f"gdpo/{k}": v for k, v in metrics.items() if math.isfinite(v)}, on_step=True,
                      on_epoch=False, prog_bar=False, batch_size=int(batch["cond"].shape[0]))
        self.log("reward", metrics["reward/total"], on_step=True, prog_bar=True, logger=False,
                 batch_size=int(batch["cond"].shape[0]))


# ====================================================================== evaluation
@torch.no_grad()
def evaluate_policy(
    policy: nn.Module,
    batches: list[dict[str, Any]],
    n_steps: int,
    reward_fn: RewardFn,
    noise_scale: float = 0.0,
    seed: int = 0,
    shift: float = 1.0,
) -> dict[str, float]:
    """Mean rewards of ``policy`` on the given condition batches, one sample per condition.

    ``noise_scale = 0`` (default) samples with the deterministic Euler ODE, as at inference; the
    initial noise comes from ``seed`` so that before/after comparisons see the same noise.
    """
    policy.eval()
    dev = next(policy.parameters()).device
    gen = torch.Generator(device=dev if dev.type == "cuda" else "cpu").manual_seed(seed)
    acc: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        cond = batch["cond"].to(dev)
        heads = np.asarray(torch.as_tensor(batch["true_head_px"]), dtype=np.float64)
        ro = sample_rollouts(policy, cond, heads.shape[1], n_steps, noise_scale, gen, _opt(batch, "tokens", dev),
                             _opt(batch, "token_mask", dev), shift)
        r = reward_fn(ro.videos, heads, np.asarray(torch.as_tensor(batch["mpp"]), dtype=np.float64))
        for k, v in r.items():
            acc.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
    out = {k: float(np.concatenate(v).mean()) for k, v in acc.items()}
    out["n"] = float(sum(len(b["cond"]) for b in batches))
    return out


def _opt(batch: dict[str, Any], key: str, dev: torch.device) -> Tensor | None:
    t = batch.get(key)
    return None if t is None else t.to(dev)


# ====================================================================== data
class GDPOConditionDataset(Dataset):
    """Conditions of a rendered-arrays folder for GDPO: ``cond``, ``true_head_px``, ``mpp``, ``index``.

    True head dots are decoded from the true videos with ``head_decoder`` (default
    ``ml.decode.decode_head_positions``) once per sample and cached; ``mpp = tile_size_m / resolution``.
    """

    def __init__(self, rendered_dir: str | Path, rows: np.ndarray, head_decoder: Callable[[np.ndarray], np.ndarray] | None = None,
                 with_tokens: bool = False, max_records: int = 64) -> None:
        from ml.models.data import RenderedVideoDataset

        self.base = RenderedVideoDataset(rendered_dir, rows, with_tokens=with_tokens, max_records=max_records)
        self.reader = self.base.reader
        if head_decoder is None:
            from ml.decode import decode_head_positions as head_decoder  # noqa: N813
        self.head_decoder = head_decoder
        self._heads: dict[int, np.ndarray] = {}
        idx = self.reader.index
        res = idx["resolution"].to_numpy(dtype=np.float64) if "resolution" in idx.columns else None
        if "tile_size_m" not in idx.columns:
            raise ValueError(f"{rendered_dir}/index.parquet: missing column 'tile_size_m' (needed for metres per pixel)")
        self._mpp = idx["tile_size_m"].to_numpy(dtype=np.float64) / (res if res is not None else float(self.reader.resolution))

    def __len__(self) -> int:
        return len(self.base)

    def true_head(self, i: int) -> np.ndarray:
        if i not in self._heads:
            self._heads[i] = np.asarray(self.head_decoder(self.reader.video(i)), dtype=np.float32)
        return self._heads[i]

    def __getitem__(self, j: int) -> dict[str, Any]:
        item = self.base[j]
        i = int(item.pop("index"))
        item.pop("video")
        item["index"] = i
        item["true_head_px"] = torch.from_numpy(self.true_head(i))
        item["mpp"] = torch.tensor(self._mpp[i], dtype=torch.float32)
        return item


def _batches(ds: Dataset, n: int, batch_size: int) -> list[dict[str, Any]]:
    """The first ``n`` items of ``ds`` as collated batches (for the before/after evaluation)."""
    from torch.utils.data import default_collate

    items = [ds[i] for i in range(min(n, len(ds)))]
    return [default_collate(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


# ====================================================================== entry point
@dataclass
class GDPOResult:
    """What :func:`train_gdpo` produced."""

    checkpoint_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None


def train_gdpo(
    rendered_dir: str | Path,
    sft_checkpoint: str | Path,
    out_dir: str | Path,
    cfg: GDPOConfig | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    reward_fn: RewardFn | None = None,
    head_decoder: Callable[[np.ndarray], np.ndarray] | None = None,
) -> GDPOResult:
    """Fine-tune an SFT video model with Traj-GDPO on the train split of ``rendered_dir``.

    Writes ``out_dir/gdpo.pt`` (``ml.models.checkpoint`` format, loadable with ``load_video_model``)
    and ``out_dir/gdpo_metrics.json``. Metrics: ``before/<reward>`` and ``after/<reward>`` (Euler
    sampler on the first ``n_eval`` rows of ``eval_split``), and ``final/<metric>`` (mean of the last
    quarter of the training iterations). ``tracking_uri`` None: no MLflow run.
    """
    from ml.models.checkpoint import load_video_model, save_video_model
    from ml.models.data import split_rows

    cfg = cfg or GDPOConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    policy, model_cfg = load_video_model(sft_checkpoint)
    reference, _ = load_video_model(sft_checkpoint) if cfg.beta > 0 else (None, None)
    with_tokens = bool(getattr(model_cfg, "uses_records", False))
    max_records = int(getattr(model_cfg, "max_records", 64))

    import pandas as pd

    index = pd.read_parquet(Path(rendered_dir) / "index.parquet")
    rows = split_rows(index, val_fraction=0.1, seed=cfg.seed)
    if len(rows["train"]) == 0:
        raise ValueError(f"{rendered_dir}/index.parquet has no 'train' rows to run GDPO on")
    train_ds = GDPOConditionDataset(rendered_dir, rows["train"], head_decoder, with_tokens, max_records)
    eval_rows = rows.get(cfg.eval_split, np.array([], dtype=np.int64))
    eval_ds = GDPOConditionDataset(rendered_dir, eval_rows, head_decoder, with_tokens, max_records) if len(eval_rows) else None
    rfn = reward_fn or partial(compute_rewards, cfg=cfg.reward)

    module = GDPOModule(policy, cfg, reference, rfn)
    sampler = RandomSampler(train_ds, replacement=True, num_samples=cfg.steps * cfg.conditions_per_step,
                            generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(train_ds, batch_size=cfg.conditions_per_step, sampler=sampler, num_workers=0)

    logger = None
    if tracking_uri is not None:
        from lightning.pytorch.loggers import MLFlowLogger

        from ml.tracking import ensure_experiment

        ensure_experiment(cfg.experiment_name, tracking_uri)
        logger = MLFlowLogger(experiment_name=cfg.experiment_name, tracking_uri=tracking_uri,
                              run_name=cfg.run_name, tags=dict(tags or {}))
        logger.log_hyperparams({**cfg.model_dump(mode="json", exclude={"reward"}),
                                **{f"reward.{k}": v for k, v in cfg.reward.model_dump().items()},
                                "sft_checkpoint": str(sft_checkpoint), "rendered_dir": str(rendered_dir)})

    precision = cfg.precision or ("bf16-mixed" if torch.cuda.is_available() and cfg.accelerator != "cpu" else "32-true")
    trainer = L.Trainer(max_epochs=1, accelerator=cfg.accelerator, devices=cfg.devices, precision=precision,
                        logger=logger if logger is not None else False, enable_checkpointing=False,
                        log_every_n_steps=cfg.log_every_n_steps, enable_progress_bar=cfg.progress_bar,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        default_root_dir=str(out_dir))

    import warnings

    # GDPO keeps the policy in eval mode on purpose (no dropout: an unchanged policy has ratio 1)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    metrics: dict[str, float] = {}
    eval_batches = _batches(eval_ds, cfg.n_eval, cfg.conditions_per_step * cfg.group_size) if eval_ds and cfg.n_eval else []
    dev = torch.device("cuda") if (torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")) else torch.device("cpu")
    if eval_batches:
        policy.to(dev)
        before = evaluate_policy(policy, eval_batches, cfg.eval_steps, rfn, seed=cfg.seed + 1, shift=cfg.sample_shift)
        metrics.update({f"before/{k}": v for k, v in before.items()})
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    metrics["train_s"] = time.perf_counter() - t0
    if eval_batches:
        policy.to(dev)
        after = evaluate_policy(policy, eval_batches, cfg.eval_steps, rfn, seed=cfg.seed + 1, shift=cfg.sample_shift)
        metrics.update({f"after/{k}": v for k, v in after.items()})
    tail = module.history[-max(1, len(module.history) // 4):]
    for k in (tail[0] if tail else {}):
        metrics[f"final/{k}"] = float(np.nanmean([h[k] for h in tail]))
    if module.history:
        for k in module.history[0]:
            if k.startswith("reward/"):
                metrics[f"first/{k}"] = module.history[0][k]
    metrics["iterations"] = float(len(module.history))

    policy.cpu()
    ckpt = save_video_model(out_dir / "gdpo.pt", policy, model_cfg,
                            meta={"stage": "gdpo", "sft_checkpoint": str(sft_checkpoint), "gdpo": cfg.model_dump(mode="json"),
                                  "metrics": metrics})
    (out_dir / "gdpo_metrics.json").write_text(json.dumps({"metrics": metrics, "history": module.history}, indent=2))
    run_id = None
    if logger is not None:
        run_id = logger.run_id
        client = logger.experiment
        for k, v in metrics.items():
            if (k.startswith("before/") or k.startswith("after/")) and math.isfinite(v):
                client.log_metric(run_id, k.replace("/", "_"), v)
        client.log_artifact(run_id, str(out_dir / "gdpo_metrics.json"))
    return GDPOResult(checkpoint_path=Path(ckpt), metrics=metrics, mlflow_run_id=run_id)

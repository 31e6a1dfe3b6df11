"""Traj-GDPO as a LightningModule with manual optimisation (DESIGN section 9).

One iteration, for a batch of B conditions:

1. **Rollouts** - G rollouts per condition (a *group*) with :func:`ml.models.rollout.sample_rollouts`:
   the evaluation's sampler made stochastic by the Flow-GRPO SDE step, every step recorded.
2. **Rewards** - the final videos, composited over the map, are decoded and scored against the truth:
   distance, direction and connectivity (:func:`ml.rewards.compute_rewards`).
3. **Advantages** - GDPO or plain GRPO (:mod:`ml.models.advantages`), clipped to ``+-adv_clip``. Groups
   whose rewards are all equal carry no signal: they are left out of the loss, and their share is logged.
4. **Update** - for the trained denoising steps the stored step is re-scored under the current policy;
   the loss (:func:`ml.models.policy_loss.ppo_clip_loss`) is the PPO clipped ratio objective plus ``beta``
   times the KL to the frozen reference (SFT) model on the SDE means. The reference's means are computed
   once per rollout batch and reused by every inner epoch. Gradients are accumulated over the trained steps
   and applied once per inner epoch; from the second epoch the ratio can leave 1 and the clip act (with the
   log-probability averaged over every element of a video, one update moves it little).

From a deterministic start (``init_noise_scale = 0``, as evaluated) every rollout of a group has the same
first state, so the first step's model call is made once per condition rather than once per rollout, in
the rollouts and in the update alike.

The policy stays in eval mode (no dropout), so an unchanged policy gives ratio exactly 1.
"""

from __future__ import annotations

import copy
import time
from functools import partial
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from ml.models.advantages import ADVANTAGES, group_stats, informative_rows
from ml.models.policy_loss import ppo_clip_loss
from ml.models.rollout import Rollout, sample_rollouts, velocity
from ml.models.sde import gaussian_log_prob, sde_kl, sde_std, sde_step
from ml.rewards import compute_rewards
from ml.train.gdpo.config import GDPOConfig

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]
"""``reward_fn(gen_videos uint8 (R, K, H, W, 3), true_head_px (R, K, 2), metres_per_pixel (R,))``."""

ValidateFn = Callable[[nn.Module], dict[str, float]]
"""``validate(policy) -> {"total": ..., <reward>: ...}``: the deterministic sampler on val windows."""


class GDPOModule(L.LightningModule):
    """Traj-GDPO fine-tuning of a :class:`ml.models.backbone.VideoFlowModel` (see the module docstring).

    A batch is a dict with ``cond`` (B, 3, H, W) in [-1, 1], ``true_head_px`` (B, K, 2) pixel (col, row)
    (NaN where missing), ``mpp`` (B,) metres per pixel, and ``tokens`` / ``token_mask`` when the model
    reads the records. With ``validate``, the policy is scored every ``cfg.val_every_n_steps`` iterations
    and the weights of the best-scoring validation are kept in ``best_state`` (at ``best_iteration``).
    """

    def __init__(self, policy: nn.Module, cfg: GDPOConfig, reference: nn.Module | None = None,
                 reward_fn: RewardFn | None = None, validate: ValidateFn | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.policy = policy.eval()
        self.reference: nn.Module | None = None
        if cfg.beta > 0:
            self.reference = (reference if reference is not None else copy.deepcopy(policy)).requires_grad_(False).eval()
        self.reward_fn: RewardFn = reward_fn or partial(compute_rewards, cfg=cfg.reward)
        self.validate = validate
        self.history: list[dict[str, float]] = []
        self.val_history: list[dict[str, float]] = []
        self.best_total = -float("inf")
        self.best_iteration: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self._generator: torch.Generator | None = None

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
            # one stream per DDP rank (rank 0's is the single-device stream): ranks explore differently
            rank = self.trainer.global_rank if self._trainer is not None else 0
            self._generator = torch.Generator(device=dev).manual_seed(self.cfg.seed + rank)
        return self._generator

    def _backward(self, loss: Tensor) -> None:
        if self._trainer is not None:
            self.manual_backward(loss)
        else:
            loss.backward()

    def _train_steps(self) -> list[int]:
        return list(self.cfg.train_timesteps) if self.cfg.train_timesteps is not None else list(range(self.cfg.n_steps))

    # -------------------------------------------------------------- validation and selection
    def score(self, iteration: int) -> dict[str, float] | None:
        """Validate the current policy (if a ``validate`` function was given); keep its weights if it is the best
        validation after the start (iteration 0, the SFT weights, is scored but its weights are the input's)."""
        if self.validate is None:
            return None
        val = dict(self.validate(self.policy))
        val["iteration"] = float(iteration)
        self.val_history.append(val)
        if iteration > 0 and val["total"] >= self.best_total:  # ties go to the later weights (ml.train.kit.select_step)
            self.best_total, self.best_iteration = val["total"], iteration
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()}
        return val

    # -------------------------------------------------------------- one iteration
    def _step_mean(self, model: nn.Module, ro: Rollout, j: int, rows: slice, cond_image: Tensor, tokens: Tensor | None,
                   token_mask: Tensor | None, shared: bool, g: int) -> Tensor:
        """SDE mean of step ``j`` for rollout rows ``rows`` under ``model`` (with gradients if enabled).

        ``shared``: the step's input is the same for every rollout of a group (a deterministic start), so
        the model is called on one row per group and its output repeated.
        """
        x, s, sn = ro.samples[j, rows], ro.grid[j], ro.grid[j + 1]
        n = x.shape[0]
        if shared:
            reps = slice(rows.start, rows.stop, g)
            v = velocity(model, x[::g], s.expand(x[::g].shape[0]), cond_image[reps], _rows(tokens, reps),
                         _rows(token_mask, reps), ro.cond[reps]).repeat_interleave(g, dim=0)
        else:
            v = velocity(model, x, s.expand(n), cond_image[rows], _rows(tokens, rows), _rows(token_mask, rows),
                         ro.cond[rows])
        _, _, mean, _ = sde_step(x, v, s.expand(n), sn.expand(n), self.cfg.noise_scale, prev_sample=ro.samples[j + 1, rows])
        return mean

    def gdpo_iteration(self, batch: dict[str, Any], optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
        """Rollouts, rewards, advantages and ``inner_epochs`` updates for one batch; returns the metrics.

        Usable without a Trainer (pass an optimizer); ``training_step`` calls it with Lightning's.
        """
        cfg, g = self.cfg, self.cfg.group_size
        t0 = time.perf_counter()
        cond = batch["cond"].to(self.device)
        true_head = np.asarray(torch.as_tensor(batch["true_head_px"]).cpu(), dtype=np.float64)
        mpp = np.asarray(torch.as_tensor(batch["mpp"]).cpu(), dtype=np.float64).reshape(-1)
        rep = lambda t: None if t is None else t.to(self.device).repeat_interleave(g, dim=0)  # noqa: E731
        cond_r, tok_r, tmask_r = rep(cond), rep(batch.get("tokens")), rep(batch.get("token_mask"))
        n_rows = cond_r.shape[0]
        group_ids = torch.arange(cond.shape[0], device=self.device).repeat_interleave(g)

        # 1. rollouts (no grad) with the current policy
        ro = sample_rollouts(self.policy, cond_r, true_head.shape[1], cfg.n_steps, cfg.noise_scale, self._gen(),
                             tok_r, tmask_r, cfg.sample_shift, cfg.init_noise_scale, cfg.exploration_radius_px,
                             group_size=g)
        t_rollout = time.perf_counter()
        # 2. rewards against the truth
        raw = self.reward_fn(ro.videos, np.repeat(true_head, g, axis=0), np.repeat(mpp, g))
        missing = [k for k in cfg.rewards if k not in raw]
        if missing:
            raise KeyError(f"reward function did not return {missing} (got {sorted(raw)})")
        rewards = {k: torch.as_tensor(np.asarray(raw[k], dtype=np.float64), device=self.device) for k in cfg.rewards}
        t_reward = time.perf_counter()
        # 3. advantages over the groups that carry signal
        keep = informative_rows(rewards, group_ids)
        adv_raw = ADVANTAGES[cfg.advantage](rewards, group_ids, cfg.eps)
        adv = adv_raw.clamp(-cfg.adv_clip, cfg.adv_clip).to(self.device)

        # 4. updates: the reference's means once, then inner epochs over the trained steps
        opt = optimizer if optimizer is not None else self.optimizers()
        steps = self._train_steps()
        mb = cfg.micro_batch_size or n_rows
        mb = max(g, mb - mb % g)  # whole groups per micro-batch, so a shared step can call the model per group
        shared = [j == 0 and cfg.init_noise_scale == 0.0 for j in range(cfg.n_steps)]
        # micro-batches without a kept row add nothing to the loss: they are not computed
        chunks = [c for c in (slice(lo, min(lo + mb, n_rows)) for lo in range(0, n_rows, mb)) if bool(keep[c].any())]
        ref_means: dict[tuple[int, int], Tensor] = {}
        if self.reference is not None:
            with torch.no_grad():
                for j in steps:
                    for c, sl in enumerate(chunks):
                        ref_means[j, c] = self._step_mean(self.reference, ro, j, sl, cond_r, tok_r, tmask_r, shared[j], g)
        t_reference = time.perf_counter()
        sums = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clip_frac": 0.0}
        ratio_dev, grad_norm, updated = 0.0, float("nan"), bool(keep.any())
        if updated:
            for _ in range(cfg.inner_epochs):
                opt.zero_grad(set_to_none=True)
                for j in steps:
                    s, sn = ro.grid[j], ro.grid[j + 1]
                    for c, sl in enumerate(chunks):
                        mean = self._step_mean(self.policy, ro, j, sl, cond_r, tok_r, tmask_r, shared[j], g)
                        std = ro.stds[j, sl]
                        lp = gaussian_log_prob(ro.samples[j + 1, sl], mean, std)
                        if self.reference is not None:
                            # the KL reads every pixel, explored or not: the nominal (unmasked) step std
                            _, nominal = sde_std(s.expand(mean.shape[0]), sn.expand(mean.shape[0]), cfg.noise_scale, mean)
                            kl = sde_kl(mean, ref_means[j, c], nominal)
                        else:
                            kl = torch.zeros(mean.shape[0], device=self.device)
                        out = ppo_clip_loss(lp, ro.log_probs[j, sl], adv[sl], cfg.clip_range, kl, cfg.beta, keep[sl])
                        weight = float(keep[sl].sum()) / float(keep.sum()) / len(steps)
                        self._backward(out.loss * weight)
                        for k in sums:
                            sums[k] += float(getattr(out, k).detach()) * weight / cfg.inner_epochs
                        ratio_dev = max(ratio_dev, float(out.ratio_max_dev))
                params = [p for p in self.policy.parameters() if p.requires_grad and p.grad is not None]
                if cfg.grad_clip is not None and params:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
                opt.step()
        t_update = time.perf_counter()

        metrics: dict[str, float] = {f"reward/{k}": float(np.mean(v)) for k, v in raw.items()}
        metrics["reward/total"] = float(sum(metrics[f"reward/{k}"] for k in cfg.rewards))
        metrics.update({f"reward_std_in_group/{k}": float(group_stats(rewards[k], group_ids)[1].mean()) for k in rewards})
        n_groups = int(cond.shape[0])
        if not updated:  # nothing was optimised: the loss terms are undefined, not 0
            sums = {k: float("nan") for k in sums}
            ratio_dev = float("nan")
        metrics.update({
            **sums, "ratio_max_dev": ratio_dev, "grad_norm": grad_norm, "updated": float(updated),
            "zero_variance_group_frac": 1.0 - float(keep.sum()) / g / n_groups,
            "adv_mean": float(adv_raw[keep].mean()) if updated else 0.0,
            "adv_std": float(adv_raw[keep].std(unbiased=False)) if updated else 0.0,
            "adv_clipped_frac": float((adv_raw.abs() > cfg.adv_clip).float().mean()),
            "time/rollout_s": t_rollout - t0, "time/reward_s": t_reward - t_rollout,
            "time/reference_s": t_reference - t_reward, "time/update_s": t_update - t_reference,
            "time/iteration_s": t_update - t0,
        })
        self.history.append(metrics)
        return metrics

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        metrics = self.gdpo_iteration(batch)
        b = int(batch["cond"].shape[0])
        self.log_dict({f"gdpo/{k}": v for k, v in metrics.items() if np.isfinite(v)}, on_step=True, on_epoch=False,
                      batch_size=b)
        self.log("reward", metrics["reward/total"], on_step=True, prog_bar=True, logger=False, batch_size=b)
        it = batch_idx + 1
        if self.validate is not None and (it % self.cfg.val_every_n_steps == 0 or it == self.trainer.num_training_batches):
            val = self.score(it)
            self.log_dict({f"val/{k}": v for k, v in val.items() if k != "iteration"}, on_step=True, on_epoch=False,
                          batch_size=b)


def _rows(t: Tensor | None, rows: slice) -> Tensor | None:
    return None if t is None else t[rows]

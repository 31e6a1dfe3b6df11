"""``GDPOConfig``: Traj-GDPO reinforcement fine-tuning of an SFT video model, and its profiles (``ci``,
``demo``, ``gpu``: sizes, never code paths)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.rewards.config import RewardConfig


class GDPOConfig(BaseModel):
    """Traj-GDPO hyper-parameters (defaults: the ``demo`` profile, CPU); see :mod:`ml.train.gdpo.module`.

    The rollout sampler is the evaluation's (``n_steps`` and ``init_noise_scale`` as
    ``EvaluationConfig.video_sampling_steps`` and ``video_noise_scale``) made stochastic by the SDE step,
    so that the deterministic policy GDPO improves is the one that is evaluated and served.
    """

    model_config = ConfigDict(extra="forbid")

    group_size: int = Field(8, ge=2, description="G rollouts per condition")
    conditions_per_step: int = Field(4, ge=1, description="conditions (groups) per GDPO iteration")
    n_steps: int = Field(1, ge=1, description="SDE steps of a rollout (as the evaluation's Euler steps)")
    init_noise_scale: float = Field(0.0, ge=0, description="scale of the initial noise (as the evaluation's; 0: "
                                    "the flow starts at the model's source mean)")
    sample_shift: float = Field(1.0, gt=0, description="time shift of the sampling grid")
    noise_scale: float = Field(0.3, gt=0, description="a: sigma_t = a sqrt(s / (1 - s)); the exploration noise")
    exploration_radius_px: int | None = Field(
        5, ge=0, description="exploration noise only within this many pixels of the drawing (prior or policy); "
        "None: on every pixel")
    clip_range: float = Field(0.2, gt=0, description="PPO clip: ratio kept in [1 - c, 1 + c]")
    beta: float = Field(0.04, ge=0, description="weight of the KL to the reference (SFT) model; 0 = ablation")
    lr: float = Field(1e-3, gt=0, description="chosen on gridville val: 1e-3 against 1e-4 at a = 0.3 (weak evidence; "
                      "docs/results/gdpo.md)")
    weight_decay: float = Field(0.0, ge=0)
    # 10 iterations and 64 val windows keep `make demo` within ten minutes (at 20 the val gain stayed under the
    # selection margin on gridville too; docs/results.md, issue 26)
    steps: int = Field(10, ge=1, description="GDPO iterations (rollouts + updates)")
    inner_epochs: int = Field(2, ge=1, description="updates per rollout batch (the ratio leaves 1 and the clip "
                              "acts from the second)")
    advantage: Literal["gdpo", "grpo"] = "gdpo"
    rewards: tuple[str, ...] = Field(("distance", "direction", "connectivity"),
                                     description="rewards that enter the advantage")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="reward parameters (the paper's "
                                 "definitions; reward.n_distance_frames = frames is the denser-credit ablation)")
    train_timesteps: list[int] | None = Field(
        None, description="indices (0 = first, noisiest step) of the denoising steps trained on; None = all")
    adv_clip: float = Field(5.0, gt=0, description="advantages are clipped to +-adv_clip")
    eps: float = Field(1e-6, gt=0, description="added to group/batch standard deviations")
    grad_clip: float | None = Field(1.0, description="gradient norm clip (None: off)")
    micro_batch_size: int | None = Field(None, ge=1, description="rows per forward/backward in the update (rounded "
                                         "down to whole groups, at least one)")
    # selection on val windows with the deterministic sampler (as evaluated)
    n_eval: int = Field(64, ge=1, description="val windows scored before training and at every validation")
    val_every_n_steps: int = Field(10, ge=1)
    select_checkpoint: Literal["last", "best_val"] = Field(
        "best_val", description="weights exported as gdpo.pt: 'last', or 'best_val': those of the validation with "
        "the highest val reward total if it beats the SFT weights by select_min_gain, else the SFT weights")
    select_min_gain: float = Field(
        0.03, ge=0, description="val reward-total gain over the SFT weights that best_val requires: about four "
        "connectivity flips in 128 windows, above the jitter of an unchanged policy's val total")
    eval_split: str = "val"
    # infrastructure
    seed: int = 0
    accelerator: str = "auto"
    devices: int = Field(1, ge=1, description="devices (one process each); > 1 runs Lightning DDP: each rank rolls "
                         "out its own conditions and every manual backward averages the gradients over the ranks")
    num_nodes: int = Field(1, ge=1, description="machines (each with `devices`), under torchrun or SLURM: Lightning's DDP")
    precision: str | None = Field(None, description="Lightning precision; None: bf16-mixed on GPU, 32-true on CPU")
    experiment_name: str = "sig2gps-gdpo"
    run_name: str | None = None
    log_every_n_steps: int = Field(1, ge=1)
    progress_bar: bool = True

    @model_validator(mode="after")
    def _check(self) -> "GDPOConfig":
        from ml.rewards import REWARD_KEYS

        unknown = set(self.rewards) - set(REWARD_KEYS)
        if unknown or not self.rewards:
            raise ValueError(f"gdpo.rewards must be a non-empty subset of {REWARD_KEYS}, got {self.rewards}")
        if self.train_timesteps is not None:
            bad = [t for t in self.train_timesteps if not 0 <= t < self.n_steps]
            if bad or not self.train_timesteps:
                raise ValueError(f"gdpo.train_timesteps {self.train_timesteps} must be non-empty indices in "
                                 f"[0, {self.n_steps})")
        return self


def gdpo_profile(name: str, **overrides) -> GDPOConfig:
    """The GDPOConfig of a profile (``ci``, ``demo``, ``gpu``) plus field overrides; profiles differ in sizes only."""
    table: dict[str, dict] = {
        "ci": dict(group_size=2, conditions_per_step=2, steps=2, n_eval=2, val_every_n_steps=1, progress_bar=False),
        "demo": {},
        "gpu": dict(conditions_per_step=8, steps=300, n_eval=128, val_every_n_steps=25, micro_batch_size=32,
                    log_every_n_steps=5),
    }
    if name not in table:
        raise ValueError(f"unknown GDPO profile '{name}' (choose one of {', '.join(table)})")
    return GDPOConfig.model_validate({**table[name], **overrides})

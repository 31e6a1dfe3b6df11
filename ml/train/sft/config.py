"""``SFTConfig``: supervised fine-tuning of the video model with the conditional flow-matching loss, and its
profiles (``ci``, ``demo``, ``gpu``, ``pretrained``: sizes, never code paths)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.models.config import ModelConfig, model_preset


class SFTConfig(BaseModel):
    """Supervised fine-tuning with the conditional flow-matching loss.

    Defaults train from scratch at demo size; ``sft_profile("demo")`` instead fine-tunes the
    shipped base model for a few minutes (see :func:`sft_profile`).
    """

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=lambda: model_preset("demo"))
    init_checkpoint: str | None = Field(
        None, description="base model to fine-tune from (a model.pt; relative paths from the repository root); "
        "None trains from scratch")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = Field(50, ge=0)
    max_steps: int = Field(600, ge=1)
    grad_clip: float | None = 1.0
    # objective: which pixels and which noise levels the loss looks at (bench/sft_objective.py measures them)
    foreground_weight: float = Field(
        20.0, ge=1.0, description="loss weight of pixels drawn in the target or the prior (the rest weigh 1; the "
        "weighted mean is normalised by the weights, so the loss scale stays comparable)")
    head_weight: float = Field(
        1.0, ge=1.0, description="extra loss weight of the drawing layer's head channel (the anchors the decoder "
        "reads); the path channel and an RGB target weigh 1")
    head_position_weight: float = Field(
        1.0, ge=0.0, description="weight of the head-position term added to the flow-matching loss: the smooth-L1 "
        "distance (px) between the drawn head of the predicted clean layer and the true head, at every noise "
        "level (drawing-layer target only; 0: off)")
    one_step_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of each batch trained exactly as the evaluation samples: flow time "
        "1 from zero noise (one Euler step from zero initial noise, EvaluationConfig), so the estimate the evaluation "
        "reads is itself regressed on the truth; the rest of the batch keeps the logit-normal flow times")
    loss_space: Literal["velocity", "x0"] = Field(
        "x0", description="'velocity': MSE on e - x0 (weights a step by 1 / s^2 under x0 prediction, so the "
        "high-noise steps that place the route weigh least); 'x0': MSE on the implied clean sample, every noise "
        "level weighted alike")
    accumulate_grad_batches: int = Field(1, ge=1)
    # flow matching: s ~ logit-normal(mean, std), then shifted (s' = shift s / (1 + (shift - 1) s))
    timestep_mean: float = 0.0
    timestep_std: float = Field(1.0, gt=0)
    timestep_shift: float = Field(1.0, gt=0)
    ema_decay: float | None = Field(None, description="EMA of the trainable weights, used for validation and export "
                                    "(None: off); every profile sets it, with a horizon 1 / (1 - decay) sized to its "
                                    "max_steps")
    # continuation (next-GPS, ml.nextgps): a model that draws on from a given prefix of frames
    known_frames: int = Field(0, ge=0, description="continuation training: in a known_frames_prob share of the "
                              "windows the first known_frames frames of x_s are the clean target, whatever s, and "
                              "they are left out of the loss; the model learns to draw the later frames next to a "
                              "given prefix (ml.nextgps.continuation_sample with clean_prefix). 0: off")
    known_frames_prob: float = Field(0.0, ge=0.0, le=1.0)
    # validation
    val_every_n_steps: int = Field(200, ge=1)
    limit_val_batches: int = Field(4, ge=1)
    n_val_samples: int = Field(4, ge=0, description="videos sampled and decoded at each validation (from the "
                               "first val batches, the same windows and noise every time)")
    val_noise_scale: float = Field(0.0, ge=0.0, description="initial-noise scale of the validation sampler "
                                   "(as EvaluationConfig.video_noise_scale: 0 = deterministic)")
    select_checkpoint: Literal["last", "best_val"] = Field(
        "best_val", description="the weights exported as model.pt: 'last', or 'best_val': the lowest "
        "select_metric among the validations, the starting weights included (scored before the first step), "
        "so a fine-tune that makes the model worse on val windows is not shipped")
    select_metric: str = Field("val/head_err_px", description="validation metric (lower is better) of "
                               "select_checkpoint = 'best_val': val/head_err_px (head error in pixels, any data) or "
                               "val/traj_err_m (decoded error in metres; needs the road network)")
    val_sample_steps: int = Field(1, ge=1, description="Euler steps of the validation sampler (as the evaluation's, "
                                  "EvaluationConfig.video_sampling_steps)")
    sample_shift: float = Field(1.0, gt=0, description="time shift of the sampler grid")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="train share held out when the index has no 'val' split")
    # infrastructure
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    precision: str | None = Field(None, description="Lightning precision; None: bf16-mixed on GPU, 32-true on CPU")
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1, description="machines (each with `devices`), under torchrun or SLURM: Lightning's DDP")
    ckpt_every_n_steps: int = Field(100, ge=1)
    keep_checkpoints: int = Field(1, ge=-1, description="step checkpoints kept besides last.ckpt (-1: all, for a "
                                  "learning curve)")
    log_every_n_steps: int = Field(10, ge=1)
    experiment_name: str = "sig2gps-sft"
    run_name: str | None = None
    progress_bar: bool = True

    @model_validator(mode="after")
    def _check_objective(self) -> "SFTConfig":
        if self.head_position_weight > 0.0 and self.model.target != "layer":
            raise ValueError(f"head_position_weight = {self.head_position_weight} reads the drawing layer's head "
                             f"channel, but model.target is '{self.model.target}' (set head_position_weight = 0)")
        if (self.known_frames_prob > 0.0) != (self.known_frames > 0):
            raise ValueError(f"known_frames = {self.known_frames} and known_frames_prob = {self.known_frames_prob}: "
                             "continuation training needs both above 0 (or both 0: off)")
        if self.known_frames >= self.model.frames:
            raise ValueError(f"known_frames = {self.known_frames} leaves none of the model's {self.model.frames} "
                             "frames to draw")
        if self.known_frames and self.model.latent:
            raise ValueError("known_frames: a latent (VAE) model compresses frames in time, so frames cannot be "
                             "given one by one; use a pixel-space preset")
        return self


def sft_profile(name: str, **overrides) -> SFTConfig:
    """The SFTConfig of a profile (``ci``, ``demo``, ``gpu``, ``pretrained``); overrides are SFTConfig fields."""
    table: dict[str, dict] = {
        # fine-tunes the ci base (models/train_base_ci.sh: 400 steps on toy windows), as demo fine-tunes its base
        "ci": dict(model=model_preset("ci"), init_checkpoint="models/sig2gps-base-ci-32px-k9.pt", batch_size=4, lr=1e-3,
                   warmup_steps=0, max_steps=20, ema_decay=0.9,
                   val_every_n_steps=10, limit_val_batches=1, n_val_samples=2,
                   ckpt_every_n_steps=5, log_every_n_steps=1),
        # fine-tunes the shipped base model (models/README.md) on the city: minutes, not hours
        # 50 steps: 150 changed the val head error by under 0.2 % on gridville and ringtown, and 61-78 steps of
        # any design left it equal to the base's to two decimals (docs/results.md, bench.video_design); 50 keep the
        # SFT within `make demo`'s minutes. The base is the footprint base (models/README.md): trained on windows
        # whose tokens, prior and polyline read each city's footprints, as the demo renders them
        "demo": dict(model=model_preset("demo"), init_checkpoint="models/sig2gps-base-fp-64px-k17.pt", batch_size=8,
                     lr=1e-4, warmup_steps=10, max_steps=50, val_every_n_steps=50, n_val_samples=8, ema_decay=0.98),
        # effective batch 32 as 16 x 2: ~36 GiB estimated peak on an 80 GB GPU with checkpointing (batch 32:
        # ~70 GiB, too close to the 72 GiB budget; docs/results/gpu_memory.md)
        "gpu": dict(model=model_preset("gpu"), batch_size=16, accumulate_grad_batches=2, lr=2e-4, warmup_steps=500,
                    max_steps=20000,
                    val_every_n_steps=1000, n_val_samples=8, ema_decay=0.999,
                    num_workers=4, ckpt_every_n_steps=500, log_every_n_steps=25),
        "pretrained": dict(model=model_preset("pretrained"), batch_size=4, lr=1e-4, warmup_steps=100,
                           max_steps=5000, val_every_n_steps=500, n_val_samples=4, val_sample_steps=30,
                           num_workers=4, ckpt_every_n_steps=250),
    }
    if name not in table:
        raise ValueError(f"unknown SFT profile '{name}' (choose one of {', '.join(table)})")
    values = dict(table[name])
    values.update(overrides)
    return SFTConfig.model_validate(values)

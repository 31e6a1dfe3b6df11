"""Typed configs of the video model and its supervised fine-tuning, with size presets.

Defaults are the ``demo`` profile (64 px, CPU). Presets change sizes only, never code paths:

* ``ci``: 32 px, 2 layers, 2 heads of 16 (about 40 k parameters), a training step in well under a second;
* ``demo``: 64 px CPU, 4 layers, 4 heads of 32 (about 1.2 M parameters);
* ``gpu``: 128 px, 12 layers, 8 heads of 64 (about 53 M parameters), bf16-mixed, gradient checkpointing;
* ``pretrained``: a Wan checkpoint (transformer + ``AutoencoderKLWan``) from a LOCAL diffusers folder,
  fine-tuned with LoRA in the VAE's latent space. Nothing is downloaded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.rewards.config import RewardConfig

Preset = Literal["ci", "demo", "gpu", "pretrained"]
PRESETS: tuple[str, ...] = ("ci", "demo", "gpu", "pretrained")


class ModelConfig(BaseModel):
    """The image-to-video flow model (a diffusers ``WanTransformer3DModel``) and its conditioning."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field("demo", description="name of the preset these sizes came from (informational)")
    resolution: int = Field(64, ge=8, description="pixel side of the square tile (video and condition image)")
    frames: int = Field(9, ge=1, description="K video frames (4k+1 for latent presets)")
    patch_size: tuple[int, int, int] = Field((1, 4, 4), description="(t, h, w) patch of the transformer")
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    head_dim: int = Field(32, ge=4, description="channels per attention head (even, for RoPE)")
    ffn_mult: float = Field(4.0, gt=0, description="feed-forward width as a multiple of the model width")
    freq_dim: int = Field(64, ge=8, description="sinusoidal timestep embedding size")
    text_dim: int = Field(64, ge=4, description="width of the cross-attention context tokens")
    target: Literal["layer", "rgb"] = Field(
        "layer", description="what the model generates: 'layer' the 2-channel drawing layer (path so far, head blob) "
        "composited over the condition image (ml.models.layer), or 'rgb' the full RGB video (the paper's target)")
    head_blob_sigma_px: float = Field(
        1.4, gt=0, description="sigma of the layer's head blob in pixels at 64 px (scaled as the rendered head dot is; "
        "ml.models.layer.head_sigma_px); measured against a wider blob in bench/sft_objective.py")
    signal_prior: bool = Field(
        True, description="condition every frame on the signaling prior (the records' observation-model positions "
        "interpolated to the frame time, drawn as a layer; ml.models.layer.signal_prior): makes the time of each "
        "frame legible")
    prior_residual: bool = Field(
        True, description="x0 prediction starts from the signaling prior: x0 = prior + network output (the output "
        "projection starts at zero, so an untrained model draws the prior); needs signal_prior and prediction='x0'")
    source_noise: float | None = Field(
        None, gt=0, description="where sampling starts (s = 1): None is pure noise N(0, I) (the paper's flow); a "
        "number starts from the signaling prior plus that much Gaussian noise, x_1 = prior + source_noise e, so "
        "the flow only transports the prior to the route (needs signal_prior)")
    prediction: Literal["x0", "velocity"] = Field(
        "x0", description="what the network outputs: the clean video x0 (velocity derived as (x_s - x0) / s) or the "
        "velocity itself. x0 is needed whenever a patch holds more values than the model width (demo: 8x8x3 = 192 "
        "values through 128 channels): noise cannot pass that bottleneck, a clean video can")
    x0_min_s: float = Field(0.05, gt=0, lt=1, description="s floor when deriving the velocity from x0 (bounds 1/s)")
    qk_norm: str | None = "rms_norm_across_heads"
    rope_max_seq_len: int = 1024
    # signaling tokens (ablation; off reproduces the paper's image-only conditioning)
    signaling_tokens: bool = Field(False, description="cross-attend to signaling-record tokens")
    max_records: int = Field(64, ge=1, description="records per sample kept as tokens (longer traces are subsampled)")
    n_event_types: int = Field(8, ge=1)
    token_fourier_freqs: int = Field(8, ge=1, description="Fourier frequencies for (x, y, t) of a record")
    # pretrained (latent space, LoRA)
    pretrained_path: str | None = Field(None, description="local diffusers folder with transformer/ and vae/ subfolders")
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    gradient_checkpointing: bool = False

    @property
    def latent(self) -> bool:
        """True when the model works in a VAE latent space (the ``pretrained`` preset)."""
        return self.pretrained_path is not None

    @property
    def uses_records(self) -> bool:
        """True when the model reads the window's signaling records (tokens or the signal prior)."""
        return self.signaling_tokens or self.signal_prior

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.head_dim % 2:
            raise ValueError(f"model.head_dim must be even (rotary embeddings), got {self.head_dim}")
        if self.latent and (self.target == "layer" or self.signal_prior):
            raise ValueError("model.target='layer' and model.signal_prior are pixel-space settings; a pretrained "
                             "(latent) model needs target='rgb' and signal_prior=False")
        if self.source_noise is not None and not self.signal_prior:
            raise ValueError("model.source_noise (a flow that starts from the prior) needs model.signal_prior=True; "
                             "set source_noise=None for the pure-noise source")
        if self.prior_residual and not (self.signal_prior and self.prediction == "x0"):
            raise ValueError("model.prior_residual needs model.signal_prior=True and model.prediction='x0'")
        if not self.latent:
            _, ph, pw = self.patch_size
            if self.resolution % ph or self.resolution % pw:
                raise ValueError(f"model.resolution {self.resolution} must be divisible by the patch {self.patch_size}")
            if self.frames % self.patch_size[0]:
                raise ValueError(f"model.frames {self.frames} must be divisible by the temporal patch {self.patch_size[0]}")
        return self


def model_preset(name: str, **overrides) -> ModelConfig:
    """A ModelConfig for a preset name (``ci``, ``demo``, ``gpu``, ``pretrained``) plus field overrides."""
    table: dict[str, dict] = {
        "ci": dict(resolution=32, frames=9, patch_size=(1, 4, 4), num_layers=2, num_heads=2, head_dim=16,
                   freq_dim=32, text_dim=32, ffn_mult=2.0),
        # 8x8 patches at 64 px: 0.40 s a step for batch 8 on 2 CPU cores against 3.2 s with 4x4 patches
        # (measured side by side), which is what makes a ~10 minute CPU demo possible.
        "demo": dict(resolution=64, frames=17, patch_size=(1, 8, 8), num_layers=4, num_heads=4, head_dim=32,
                     freq_dim=64, text_dim=64, ffn_mult=4.0),
        # 33,792 tokens a video: without checkpointing one sample's activations alone are ~17 GiB
        # (docs/results/gpu_memory.md), so the blocks are checkpointed
        "gpu": dict(resolution=128, frames=33, patch_size=(1, 4, 4), num_layers=12, num_heads=8, head_dim=64,
                    freq_dim=256, text_dim=256, ffn_mult=4.0, gradient_checkpointing=True),
        # Sizes of the transformer come from the checkpoint; these only describe the data.
        # Wan checkpoints were trained to predict the velocity; fine-tuning keeps their parameterisation.
        "pretrained": dict(resolution=128, frames=9, patch_size=(1, 2, 2), pretrained_path="models/wan2.1-t2v-1.3b",
                           prediction="velocity", target="rgb", signal_prior=False, prior_residual=False,
                           lora_rank=16, lora_alpha=16, gradient_checkpointing=True),
    }
    if name not in table:
        raise ValueError(f"unknown model preset '{name}' (choose one of {', '.join(PRESETS)})")
    values = dict(table[name], preset=name)
    values.update(overrides)
    return ModelConfig.model_validate(values)


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


class GDPOConfig(BaseModel):
    """Traj-GDPO hyper-parameters (defaults: the ``demo`` profile, CPU); see :mod:`ml.models.lightning_gdpo`.

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

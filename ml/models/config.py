"""Typed config of the video model (its specification), with size presets; the trainers' configs live with
the trainers (``ml.train.sft.config``, ``ml.train.gdpo.config``).

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

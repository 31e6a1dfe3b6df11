"""The image-to-video flow model: a diffusers ``WanTransformer3DModel`` with channel-concatenation conditioning.

Forward contract (``VideoFlowModel.forward``)::

    velocity = model(noisy (B, C, k, h, w), s (B,), cond_image (B, 3, H, W) in [-1, 1],
                     tokens=None | (B, R, 4), token_mask=None | (B, R) bool)

``C, k, h, w`` is the model space (``model.latent_shape()``): the drawing layer (C = 2, path so far and
head blob; ``target = "layer"``, the default), the RGB video (C = 3, ``target = "rgb"``), or the VAE
latent of the ``pretrained`` preset. The transformer input is the channel concatenation ``[noisy (C),
condition image repeated over frames (3), signaling prior of each frame (2, with signal_prior), frame
mask (1)]`` (8 channels for the default), where the frame mask is 1 on the first frame. ``tokens`` are
the window's signaling records (``ml.models.tokens``); the signal prior is computed from them, so they
are required whenever ``signal_prior`` is on. ``s`` is the flow time: s = 1 pure noise, s = 0 data;
the transformer receives ``1000 s`` as its timestep (the Wan convention). The output is the velocity
``dx/ds`` (target ``x_1 - x0``, x_1 the noise); with ``prediction = "x0"`` the network predicts the
clean sample, plus the prior with ``prior_residual``, and the velocity is derived from it.

Cross-attention: Wan always cross-attends to ``encoder_hidden_states``. With signaling tokens off
(the paper's setting) the context is one learned null token; with them on it is the null token followed
by one token per record (``ml.models.tokens``). Wan's attention has no key mask, so padded records are
replaced by the null token.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml.models.config import ModelConfig
from ml.models.layer import LAYER_CHANNELS, composite_layer, layer_from_video, signal_prior
from ml.models.tokens import SignalingTokenEncoder

log = logging.getLogger(__name__)

TIMESTEP_SCALE = 1000.0


class PretrainedNotFoundError(FileNotFoundError):
    """The local diffusers folder of the ``pretrained`` preset is missing or incomplete."""


def _wan_class():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel


def build_wan_transformer(cfg: ModelConfig, in_channels: int, out_channels: int) -> nn.Module:
    """A randomly initialised ``WanTransformer3DModel`` with the sizes of ``cfg``."""
    return _wan_class()(
        patch_size=tuple(cfg.patch_size),
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=int(round(cfg.ffn_mult * cfg.inner_dim)),
        num_layers=cfg.num_layers,
        cross_attn_norm=True,
        qk_norm=cfg.qk_norm,
        rope_max_seq_len=cfg.rope_max_seq_len,
    )


class VideoFlowModel(nn.Module):
    """Velocity predictor for image-to-video flow matching (see the module docstring for the contract)."""

    def __init__(self, cfg: ModelConfig, transformer: nn.Module | None = None, vae: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.vae = vae
        if vae is not None:
            vae.requires_grad_(False)
            vae.eval()
            self.channels = int(vae.config.z_dim)
            dim_mult = list(vae.config.dim_mult)
            self.spatial_factor = 2 ** (len(dim_mult) - 1)
            self.temporal_factor = 2 ** int(sum(bool(t) for t in vae.config.temperal_downsample))
            z = self.channels
            self.register_buffer("latents_mean", torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z, 1, 1, 1), persistent=False)
            self.register_buffer("latents_std", torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z, 1, 1, 1), persistent=False)
        else:
            self.channels = LAYER_CHANNELS if cfg.target == "layer" else 3
            self.spatial_factor = 1
            self.temporal_factor = 1
        # condition channels: the RGB image (or its latent), then the per-frame signaling prior
        self.cond_channels = (self.channels if vae is not None else 3) + (LAYER_CHANNELS if cfg.signal_prior else 0)
        if transformer is None:
            transformer = build_wan_transformer(cfg, self.channels + self.cond_channels + 1, self.channels)
            if cfg.prior_residual:
                # x0 = prior + output: a zero output projection makes the untrained model draw the prior
                nn.init.zeros_(transformer.proj_out.weight)
                nn.init.zeros_(transformer.proj_out.bias)
        self.transformer = transformer
        text_dim = int(transformer.config.text_dim)
        self.null_token = nn.Parameter(torch.randn(1, 1, text_dim) * 0.02)
        self.token_encoder = (
            SignalingTokenEncoder(text_dim, cfg.n_event_types, cfg.token_fourier_freqs) if cfg.signaling_tokens else None
        )
        if cfg.gradient_checkpointing and hasattr(transformer, "enable_gradient_checkpointing"):
            transformer.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ model space
    @property
    def latent(self) -> bool:
        return self.vae is not None

    def latent_shape(self, frames: int | None = None, resolution: int | None = None) -> tuple[int, int, int, int]:
        """(C, k, h, w) of the model space for K frames at a pixel resolution (defaults from the config)."""
        K = frames or self.cfg.frames
        R = resolution or self.cfg.resolution
        if not self.latent:
            return (self.channels, K, R, R)
        return (self.channels, 1 + (K - 1) // self.temporal_factor, R // self.spatial_factor, R // self.spatial_factor)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, K, H, W) in [-1, 1] -> model space: the drawing layer (``target='layer'``), the
        pixels themselves (``'rgb'``) or the VAE latent (pretrained preset)."""
        if not self.latent:
            return layer_from_video(video, self.cfg.head_blob_sigma_px) if self.cfg.target == "layer" else video
        dist = self.vae.encode(video.to(self.vae.dtype)).latent_dist
        z = dist.mode().float()
        return (z - self.latents_mean) / self.latents_std

    @torch.no_grad()
    def decode_video(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Model space -> pixels (B, 3, K, H, W) clamped to [-1, 1]; a layer is composited over the
        condition image, so ``cond`` (from :meth:`encode_condition`) is required then."""
        if not self.latent:
            if self.cfg.target == "rgb":
                return x.clamp(-1.0, 1.0)
            if cond is None:
                raise ValueError("decode_video of a drawing layer needs cond (the encoded condition image)")
            return composite_layer(cond[:, :3, 0], x).clamp(-1.0, 1.0)
        z = x.float() * self.latents_std + self.latents_mean
        return self.vae.decode(z.to(self.vae.dtype)).sample.float().clamp(-1.0, 1.0)

    @torch.no_grad()
    def encode_condition(self, cond_image: torch.Tensor, tokens: torch.Tensor | None = None,
                         token_mask: torch.Tensor | None = None, frames: int | None = None) -> torch.Tensor:
        """Condition (B, Cc, 1 or K, h, w) in model space, computed once per sampling run: the image (or its
        latent), then with ``signal_prior`` the prior layer of every frame (needs the record ``tokens``)."""
        image = self._encode_image(cond_image)
        if not self.cfg.signal_prior:
            return image
        if tokens is None:
            raise ValueError("model.signal_prior is on: the condition needs the window's signaling records "
                             "(tokens (B, R, 4) in the ml.models.tokens format)")
        K = int(frames or self.cfg.frames)
        prior = signal_prior(tokens.to(cond_image.device), token_mask, K, cond_image.shape[-1], self.cfg.head_blob_sigma_px)
        return torch.cat([image.expand(-1, -1, K, -1, -1), prior.to(image.dtype)], dim=1)

    def _encode_image(self, cond_image: torch.Tensor) -> torch.Tensor:
        if not self.latent:
            return cond_image.unsqueeze(2)
        return self.encode_video(cond_image.unsqueeze(2))

    def prior_model_space(self, cond: torch.Tensor) -> torch.Tensor:
        """The signaling prior in model space (the layer itself, or composited to RGB for ``target='rgb'``)."""
        prior = cond[:, -LAYER_CHANNELS:]
        if self.cfg.target == "layer":
            return prior
        return composite_layer(cond[:, :3, 0], prior)

    def source_sample(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The flow's start x_1 for standard normal ``noise`` (B, C, k, h, w): the noise itself, or with
        ``cfg.source_noise`` the signaling prior plus that much noise (see ``ModelConfig.source_noise``)."""
        if self.cfg.source_noise is None:
            return noise
        prior = self.prior_model_space(cond.expand(-1, -1, noise.shape[2], -1, -1)).to(noise.dtype)
        return prior + float(self.cfg.source_noise) * noise

    # ------------------------------------------------------------------ forward
    def context(self, batch: int, tokens: torch.Tensor | None, token_mask: torch.Tensor | None,
                dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Cross-attention context (B, 1 + R, text_dim): the null token, then record tokens if enabled."""
        null = self.null_token.to(device=device, dtype=dtype).expand(batch, -1, -1)
        if self.token_encoder is None or tokens is None:
            return null
        tok = self.token_encoder(tokens.to(device)).to(dtype)
        if token_mask is not None:
            tok = torch.where(token_mask.to(device).bool().unsqueeze(-1), tok, null)
        return torch.cat([null, tok], dim=1)

    def forward(
        self,
        noisy: torch.Tensor,
        s: torch.Tensor,
        cond_image: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        *,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The velocity at flow time ``s`` (predicted directly, or derived from a predicted clean video, per
        ``cfg.prediction``); pass ``cond`` (from ``encode_condition``) to skip re-encoding."""
        B, C, k, h, w = noisy.shape
        if cond is None:
            if cond_image is None:
                raise ValueError("VideoFlowModel.forward needs cond_image or cond")
            cond = self.encode_condition(cond_image, tokens, token_mask, frames=k)
        cond = cond.to(dtype=noisy.dtype, device=noisy.device).expand(B, -1, k, h, w)
        mask = torch.zeros(B, 1, k, h, w, dtype=noisy.dtype, device=noisy.device)
        mask[:, :, 0] = 1.0
        x = torch.cat([noisy, cond, mask], dim=1)
        s = torch.as_tensor(s, device=noisy.device, dtype=torch.float32).reshape(-1).expand(B)
        ctx = self.context(B, tokens, token_mask, noisy.dtype, noisy.device)
        out = self.transformer(hidden_states=x, timestep=s * TIMESTEP_SCALE, encoder_hidden_states=ctx, return_dict=False)[0]
        if self.cfg.prediction == "x0":
            if self.cfg.prior_residual:
                out = out + self.prior_model_space(cond)
            # the network predicts the clean video; x_s = (1 - s) x0 + s e gives v = e - x0 = (x_s - x0) / s
            s_b = s.to(out.dtype).reshape(B, 1, 1, 1, 1).clamp_min(self.cfg.x0_min_s)
            return (noisy - out) / s_b
        return out

    # ------------------------------------------------------------------ parameters
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """State of the parameters that training changes (all of them for pixel presets; LoRA etc. otherwise)."""
        sd = self.state_dict()
        if not self.latent:
            return {k: v for k, v in sd.items() if not k.startswith("vae.")}
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in sd.items() if k in names}

    def n_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------- pretrained (latent, LoRA)
def _check_pretrained_folder(path: Path) -> None:
    missing = [sub for sub in ("transformer", "vae") if not (path / sub / "config.json").is_file()]
    if missing:
        raise PretrainedNotFoundError(
            f"pretrained Wan checkpoint folder '{path}' is missing "
            + ", ".join(f"{m}/config.json" for m in missing)
            + ". The 'pretrained' preset loads a LOCAL diffusers folder (e.g. a Wan2.1-T2V-1.3B-Diffusers "
            "snapshot with transformer/ and vae/ subfolders) and never downloads; set model.pretrained_path."
        )


def _adapt_patch_embedding(transformer: nn.Module, z: int) -> bool:
    """Make the patch embedding accept [noisy z, cond z, mask 1]; return True when it had to change.

    A T2V checkpoint (in = z) keeps its weights for the noisy latent and gets zero weights for the
    rest, so it starts as the pretrained model. A Wan I2V checkpoint (in = 2 z + 4: noisy, 4 mask
    channels, condition) has its condition weights moved and its mask weights summed into ours.
    """
    need = 2 * z + 1
    old: nn.Conv3d = transformer.patch_embedding
    if old.in_channels == need:
        return False
    new = nn.Conv3d(need, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                    dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.copy_(old.bias)
        w = old.weight
        if old.in_channels == 2 * z + 4:
            new.weight[:, :z] = w[:, :z]
            new.weight[:, z:2 * z] = w[:, z + 4:]
            new.weight[:, 2 * z] = w[:, z:z + 4].sum(1)
        elif old.in_channels >= z:
            new.weight[:, :z] = w[:, :z]
        else:
            raise ValueError(f"pretrained transformer has in_channels={old.in_channels} < VAE z_dim={z}")
    transformer.patch_embedding = new
    transformer.register_to_config(in_channels=need)
    return True


def add_lora_adapters(transformer: nn.Module, cfg: ModelConfig, widened: bool) -> nn.Module:
    """Freeze the transformer and add LoRA on ``cfg.lora_targets``; trainable afterwards: the LoRA weights and,
    when it was widened for the condition channels, the patch embedding."""
    from peft import LoraConfig, inject_adapter_in_model

    transformer.requires_grad_(False)
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.lora_targets),
                      init_lora_weights=True)
    transformer = inject_adapter_in_model(lora, transformer)
    for n, p in transformer.named_parameters():
        p.requires_grad_("lora_" in n or (widened and n.startswith("patch_embedding.")))
    return transformer


def load_pretrained_video_model(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> VideoFlowModel:
    """Load the Wan transformer and its VAE from ``cfg.pretrained_path`` (local only) and add LoRA adapters.

    Trainable afterwards: the LoRA weights on ``cfg.lora_targets`` of every attention, the patch
    embedding when it was widened for the condition channels, the null token and the token encoder.
    """
    from diffusers import AutoencoderKLWan

    if cfg.pretrained_path is None:
        raise ValueError("load_pretrained_video_model needs model.pretrained_path")
    path = Path(cfg.pretrained_path).expanduser().resolve()
    _check_pretrained_folder(path)
    transformer = _wan_class().from_pretrained(path, subfolder="transformer", local_files_only=True, torch_dtype=dtype)
    vae = AutoencoderKLWan.from_pretrained(path, subfolder="vae", local_files_only=True, torch_dtype=torch.float32)
    z = int(vae.config.z_dim)
    if int(transformer.config.out_channels) != z:
        raise ValueError(f"{path}: transformer out_channels={transformer.config.out_channels} != VAE z_dim={z}")
    widened = _adapt_patch_embedding(transformer, z)
    transformer = add_lora_adapters(transformer, cfg, widened)
    model = VideoFlowModel(cfg, transformer=transformer, vae=vae)
    log.info("loaded pretrained Wan from %s: %d parameters, %d trainable", path, model.n_parameters(),
             model.n_parameters(trainable_only=True))
    return model


def build_video_model(cfg: ModelConfig) -> VideoFlowModel:
    """A fresh model for a config: random pixel-space Wan, or the pretrained Wan + VAE + LoRA."""
    if cfg.latent:
        return load_pretrained_video_model(cfg)
    return VideoFlowModel(cfg)


def describe(model: VideoFlowModel) -> dict[str, Any]:
    """Small JSON-able summary (parameters, model space) for logs and model cards."""
    return {
        "preset": model.cfg.preset,
        "latent": model.latent,
        "n_parameters": model.n_parameters(),
        "n_trainable": model.n_parameters(trainable_only=True),
        "model_space": list(model.latent_shape()),
        "transformer": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.transformer.config).items()
                        if not k.startswith("_")},
    }

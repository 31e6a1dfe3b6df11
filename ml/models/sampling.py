"""Batched Euler ODE sampler of the flow model, from s = 1 (noise) to s = 0 (data)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ml.models.flow_matching import timestep_grid
from ml.pixels import to_uint8


@torch.no_grad()
def euler_sample(
    model: torch.nn.Module,
    cond_image: torch.Tensor,
    n_steps: int,
    generator: torch.Generator | None = None,
    tokens: torch.Tensor | None = None,
    token_mask: torch.Tensor | None = None,
    shift: float = 1.0,
    noise: torch.Tensor | None = None,
    frames: int | None = None,
    return_model_space: bool = False,
    velocity_fn: Callable[..., torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample videos for a batch of condition images with N Euler steps x_{s'} = x_s + (s' - s) v.

    ``model`` is a ``VideoFlowModel`` (it supplies ``latent_shape``, ``encode_condition`` and
    ``decode_video``; ``tokens``/``token_mask`` are the window's signaling records, needed when the model
    reads them; the flow starts at ``model.source_sample(cond, noise)``); ``velocity_fn(x, s, cond=...)`` overrides the call to the model (tests pass an
    exact field). The initial noise is drawn with ``generator`` (on the generator's device) unless
    ``noise`` is given. Returns pixels (B, 3, K, H, W) in [-1, 1], or the final model-space state
    when ``return_model_space``. ``cond`` is the encoded condition when the caller already has it.
    """
    device = cond_image.device
    B = cond_image.shape[0]
    if noise is None:
        C, k, h, w = model.latent_shape(frames, cond_image.shape[-1])
        gdev = generator.device if generator is not None else device
        noise = torch.randn((B, C, k, h, w), generator=generator, device=gdev)
    noise = noise.to(device=device, dtype=torch.float32)
    if cond is None:
        cond = model.encode_condition(cond_image, tokens, token_mask, frames=noise.shape[2])
    x = model.source_sample(cond, noise)
    grid = timestep_grid(n_steps, shift, device=device)
    fn = velocity_fn or model
    for i in range(n_steps):
        s, s_next = grid[i], grid[i + 1]
        sb = s.expand(B)
        if autocast_dtype is not None and device.type == "cuda":
            with torch.autocast("cuda", dtype=autocast_dtype):
                v = fn(x, sb, cond_image, tokens, token_mask, cond=cond)
        else:
            v = fn(x, sb, cond_image, tokens, token_mask, cond=cond)
        x = x + (s_next - s) * v.float()
    if return_model_space:
        return x
    return model.decode_video(x, cond)


def layer_to_uint8(layer: torch.Tensor) -> np.ndarray:
    """Drawing layers (B, 2, K, H, W) in [-1, 1] -> uint8 alpha (B, K, H, W, 2) (0: nothing, 255: drawn)."""
    return to_uint8(layer).movedim(1, -1).cpu().numpy()


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    cond_image: torch.Tensor,
    n_steps: int,
    generator: torch.Generator | None = None,
    tokens: torch.Tensor | None = None,
    token_mask: torch.Tensor | None = None,
    frames: int | None = None,
    noise: torch.Tensor | None = None,
    shift: float = 1.0,
    autocast_dtype: torch.dtype | None = None,
    noise_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The one sample-then-composite path of evaluation, validation and serving.

    ``noise_scale`` multiplies the initial noise: 1 samples the learnt distribution; below 1 samples
    nearer its mode (0: deterministic; with one Euler step, the model's posterior-mean estimate), which
    a point estimate such as a decoded trajectory can prefer (``bench/sampling_steps.py``).

    Returns ``(video uint8 (B, K, H, W, 3), layer uint8 (B, K, H, W, 2) or None)``: the RGB video that
    people and rewards see, and for a drawing-layer model the layer itself, which the decoder reads
    directly (``ml.decode.decode_video_to_trajectory(..., layer=...)``).
    """
    from ml.models.data import to_uint8_frames

    if noise is None:
        C, k, h, w = model.latent_shape(frames, cond_image.shape[-1])
        gdev = generator.device if generator is not None else cond_image.device
        noise = torch.randn((cond_image.shape[0], C, k, h, w), generator=generator, device=gdev)
    cond = model.encode_condition(cond_image, tokens, token_mask, frames=noise.shape[2])
    x = euler_sample(model, cond_image, n_steps, tokens=tokens, token_mask=token_mask, shift=shift,
                     noise=noise.to(cond_image.device) * float(noise_scale), frames=frames, return_model_space=True,
                     autocast_dtype=autocast_dtype, cond=cond)
    video = to_uint8_frames(model.decode_video(x, cond))
    layer = layer_to_uint8(x) if (not model.latent and model.cfg.target == "layer") else None
    return video, layer

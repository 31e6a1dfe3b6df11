"""Batched Euler ODE sampler of the flow model, from s = 1 (noise) to s = 0 (data)."""

from __future__ import annotations

from typing import Callable

import torch

from ml.models.flow_matching import timestep_grid


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
) -> torch.Tensor:
    """Sample videos for a batch of condition images with N Euler steps x_{s'} = x_s + (s' - s) v.

    ``model`` is a ``VideoFlowModel`` (it supplies ``latent_shape``, ``encode_condition`` and
    ``decode_video``); ``velocity_fn(x, s, cond=...)`` overrides the call to the model (tests pass an
    exact field). The initial noise is drawn with ``generator`` (on the generator's device) unless
    ``noise`` is given. Returns pixels (B, 3, K, H, W) in [-1, 1], or the final model-space state
    when ``return_model_space``.
    """
    device = cond_image.device
    B = cond_image.shape[0]
    if noise is None:
        C, k, h, w = model.latent_shape(frames, cond_image.shape[-1])
        gdev = generator.device if generator is not None else device
        noise = torch.randn((B, C, k, h, w), generator=generator, device=gdev)
    x = noise.to(device=device, dtype=torch.float32)
    cond = model.encode_condition(cond_image)
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
    return model.decode_video(x)

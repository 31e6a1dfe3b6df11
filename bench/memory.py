"""Peak GPU memory of one training step of the ``gpu`` and ``pretrained`` profiles, estimated on the CPU.

    .venv/bin/python -m bench.memory            # both profiles, writes outputs/bench/memory.json (~1 min)
    .venv/bin/python -m bench.memory --quick    # bf16-mixed only (skips the fp32 upper bound)

No GPU is needed and nothing is downloaded (the pretrained transformer is built from the Wan2.1-T2V-1.3B
config with random weights, at 1-3 blocks; the VAE is a shape stub). docs/results/gpu_memory.md has the
numbers and their reading. Method:

1. **Measure** one training step (``SFTModule.flow_loss`` forward + backward: the Lightning training step
   without the optimizer) of the profile's model at small sizes on the CPU: fewer blocks ``L``, fewer video
   tokens ``N`` (fewer frames and pixels; same patch, width and heads), smaller batch ``B``. Two counters:

   * *saved activations*: ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor autograd keeps
     for backward; bytes are summed per storage (views and re-saves count once, parameters are excluded,
     autocast's bf16 weight copies are included). Under gradient checkpointing diffusers keeps every
     checkpointed block's inputs alive outside autograd (non-reentrant ``torch.utils.checkpoint``); they
     are added by wrapping the checkpoint function diffusers installed;
   * *activation peak*: a ``TorchDispatchMode`` records every new storage an op returns, and a
     ``weakref.finalize`` on the storage its release, giving the timeline of live tensor bytes over forward
     and backward (saved activations, temporaries, the recomputation of checkpointed blocks). Its maximum
     without the parameter gradients (counted in the static part) is the activation peak.

   The forward runs under ``torch.autocast("cpu", torch.bfloat16)`` with fp32 parameters, as Lightning's
   ``bf16-mixed`` does on the GPU: matmul / conv / attention inputs are saved in bf16, Wan's FP32LayerNorm
   paths and modulations in fp32, so the bytes come out per dtype and no blanket x0.5 factor is applied.
   The same step in fp32 is measured too, as a bound should CUDA autocast keep more in fp32 than CPU's.

2. **Model and extrapolate** (:class:`ActivationModel`): saved bytes are exactly trilinear in (B, L, N)
   (activations are per token and per block; attention is flash / memory-efficient SDPA, whose saved state
   is O(N): q, k, v, the output and a log-sum-exp per query, no N x N matrix; the CPU runs the same kind of
   kernel, ``_scaled_dot_product_flash_attention_for_cpu``, recorded in ``attention_kernels``). The 8
   coefficients of 1, B, L, N, BL, BN, LN, BLN are solved from the 2 x 2 x 2 grid and checked on a ninth,
   larger point. The peak is saved bytes + one block's backward transient (r x one block's saved bytes,
   r measured), plus with checkpointing one recomputed block; the model is checked against every measured
   activation peak (``peak_model_over_measured``).

3. **Add the static part**: fp32 parameters (all of them: the frozen Wan base is loaded in fp32), fp32
   gradients and AdamW's two fp32 moments of the trainable parameters, the EMA shadow when the profile has
   one, one trainable-size fp32 temporary for the optimizer step, the frozen VAE's fp32 weights
   (pretrained: ~127 M parameters, its published size; the VAE encode runs under no_grad before the
   transformer forward, so its transient is not part of this peak) and an assumed 1 GiB for the CUDA
   context and cuBLAS / attention workspaces.

A batch fits when static + activation peak is at most 90 % of 80 GiB (72 GiB).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
import weakref
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.common import write_result
from ml.models.backbone import VideoFlowModel, _adapt_patch_embedding, _wan_class, add_lora_adapters
from ml.models.config import ModelConfig, model_preset
from ml.train.sft.config import sft_profile
from ml.train.sft.module import SFTModule

GIB = 1024 ** 3
GPU_GIB = 80.0
MARGIN = 0.10
CUDA_CONTEXT_GIB = 1.0
#: Wan2.1-T2V-1.3B transformer (diffusers ``transformer/config.json``).
WAN_1_3B: dict[str, Any] = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
                                cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=1024)
#: AutoencoderKLWan of Wan2.1 (z_dim 16, x8 space, x4 time): about 127 M parameters, frozen.
WAN_VAE_PARAMS = 127_000_000
WAN_VAE_CONFIG = dict(z_dim=16, dim_mult=[1, 2, 4, 4], temperal_downsample=[False, True, True])

#: small measurement grid per profile: (B values, L values, frames values, resolution), and the check point
GRID: dict[str, dict[str, Any]] = {
    # pixel space, patch 1x4x4: 32 px gives 64 tokens a frame; frames 2 and 4 -> N = 128, 256
    "gpu": dict(batches=(1, 2), layers=(1, 2), frames=(2, 4), resolution=32, check=(3, 3, 8)),
    # latent space (x8, x4), patch 1x2x2: 64 px gives an 8x8 latent, 16 tokens a latent frame;
    # 5 and 9 frames -> 2 and 3 latent frames -> N = 32, 48
    "pretrained": dict(batches=(1, 2), layers=(1, 2), frames=(5, 9), resolution=64, check=(3, 3, 13)),
}


# ---------------------------------------------------------------------- counters
class LiveTensorBytes(TorchDispatchMode):
    """Bytes of live tensor storages created while the mode is active, with their timeline (for peaks)."""

    def __init__(self, exclude: set[int] = frozenset()) -> None:
        super().__init__()
        self.exclude = set(exclude)
        self.live: dict[int, tuple[int, int]] = {}  # storage address -> (allocation id, bytes)
        self.events: list[tuple[int, int]] = []  # (allocation id, +bytes | -bytes) in time order
        self.current = 0
        self.peak = 0

    def _freed(self, key: int, alloc: int, nbytes: int) -> None:
        if self.live.get(key, (None,))[0] == alloc:
            del self.live[key]
            self.current -= nbytes
            self.events.append((alloc, -nbytes))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                key = st.data_ptr()
                if key and key not in self.live and key not in self.exclude:
                    n, alloc = st.nbytes(), len(self.events)
                    self.live[key] = (alloc, n)
                    self.events.append((alloc, n))
                    self.current += n
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(st, self._freed, key, alloc, n)
        return out

    def allocation_ids(self, tensors) -> set[int]:
        """Allocation ids of live tensors (e.g. the parameter gradients after backward)."""
        keys = {t.untyped_storage().data_ptr() for t in tensors}
        return {self.live[k][0] for k in keys if k in self.live}

    def peak_without(self, ids: set[int]) -> int:
        """The peak of the timeline with the allocations ``ids`` left out."""
        cur = peak = 0
        for alloc, n in self.events:
            if alloc not in ids:
                cur += n
                peak = max(peak, cur)
        return peak


class SavedTensorBytes:
    """Bytes kept for backward: autograd's saved tensors plus the inputs checkpointing retains."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.storages: dict[int, tuple[int, str, str]] = {}
        self.kernels: set[str] = set()

    def add(self, t: torch.Tensor, kind: str) -> None:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key and key not in self.exclude and key not in self.storages:
            self.storages[key] = (st.nbytes(), str(t.dtype).replace("torch.", ""), kind)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if t.grad_fn is not None and "Attention" in type(t.grad_fn).__name__:
            self.kernels.add(type(t.grad_fn).__name__)
        self.add(t, "saved")
        return t

    @property
    def total(self) -> int:
        return sum(n for n, _, _ in self.storages.values())

    def by(self, index: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.storages.values():
            out[v[index]] = out.get(v[index], 0) + v[0]
        return out


# ---------------------------------------------------------------------- models
class LatentStubVAE(nn.Module):
    """Stands in for the frozen ``AutoencoderKLWan`` during measurement: its config (z_dim 16, x8 space, x4
    time) and a no-grad ``encode`` that pools pixels to the latent shape. The VAE runs under no_grad before
    the transformer, so its weights are added to the static memory by size and its transient is left out."""

    def __init__(self) -> None:
        super().__init__()
        z = WAN_VAE_CONFIG["z_dim"]
        self.config = SimpleNamespace(**WAN_VAE_CONFIG, latents_mean=[0.0] * z, latents_std=[1.0] * z)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def encode(self, video: torch.Tensor) -> SimpleNamespace:
        B, _, K, H, W = video.shape
        shape = (1 + (K - 1) // 4, H // 8, W // 8)
        z = nn.functional.adaptive_avg_pool3d(video.float().mean(1, keepdim=True), shape)
        z = z.expand(-1, self.config.z_dim, -1, -1, -1).contiguous()
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: z))


def wan_pretrained_transformer(cfg: ModelConfig, num_layers: int, device: str | torch.device = "cpu") -> nn.Module:
    """The Wan2.1-T2V-1.3B transformer at ``num_layers`` blocks, random weights, prepared as
    ``load_pretrained_video_model`` prepares the real one: patch embedding widened to 2 z + 1 channels, base
    frozen (fp32), LoRA on ``cfg.lora_targets``, LoRA and the widened patch embedding trainable."""
    with torch.device(device):
        transformer = _wan_class()(**{**WAN_1_3B, "num_layers": num_layers})
        widened = _adapt_patch_embedding(transformer, WAN_VAE_CONFIG["z_dim"])
        return add_lora_adapters(transformer, cfg, widened)


def build_model(profile: str, *, device: str | torch.device = "cpu", **overrides) -> VideoFlowModel:
    """The profile's ``VideoFlowModel`` (pretrained: random Wan 1.3B-shaped weights, stub VAE) with overrides."""
    cfg = model_preset(sft_profile(profile).model.preset, **overrides)
    if cfg.latent:
        transformer = wan_pretrained_transformer(cfg, overrides.get("num_layers", WAN_1_3B["num_layers"]), device)
        with torch.device(device):
            return VideoFlowModel(cfg, transformer=transformer, vae=LatentStubVAE())
    with torch.device(device):
        return VideoFlowModel(cfg)


def parameter_counts(profile: str) -> dict[str, int]:
    """Parameters of the full-size model (built on the meta device: no memory, no weights)."""
    model = build_model(profile, device="meta")
    out = {"parameters": model.n_parameters(), "trainable": model.n_parameters(trainable_only=True)}
    if model.latent:
        out["vae_parameters"] = WAN_VAE_PARAMS
    return out


def tokens_per_video(cfg: ModelConfig) -> int:
    """Transformer sequence length N of one video of the config."""
    pt, ph, pw = cfg.patch_size
    if cfg.latent:
        k, h = 1 + (cfg.frames - 1) // 4, cfg.resolution // 8
    else:
        k, h = cfg.frames, cfg.resolution
    return (k // pt) * (h // ph) * (h // pw)


def make_batch(cfg: ModelConfig, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A training batch of the data module's format (video, cond, tokens, token_mask)."""
    K, H, R = cfg.frames, cfg.resolution, cfg.max_records
    tokens = torch.rand(batch, R, 4, generator=generator)
    tokens[..., 2] = torch.sort(tokens[..., 2], dim=1).values
    tokens[..., 3] = torch.randint(0, cfg.n_event_types, (batch, R), generator=generator).float()
    return {"video": torch.rand(batch, 3, K, H, H, generator=generator) * 2 - 1,
            "cond": torch.rand(batch, 3, H, H, generator=generator) * 2 - 1,
            "tokens": tokens, "token_mask": torch.ones(batch, R, dtype=torch.bool)}


# ---------------------------------------------------------------------- one measurement
def measure_step(profile: str, *, batch: int, layers: int, frames: int, resolution: int, checkpointing: bool,
                 autocast: bool = True, seed: int = 0, **overrides) -> dict[str, Any]:
    """Saved-activation bytes and the live-tensor peak of one training step (forward + backward) on the CPU.

    The model is the profile's at ``layers`` blocks, ``frames`` x ``resolution`` videos and ``batch``
    samples, with ``overrides`` (ModelConfig fields) on top; ``autocast`` runs the forward under CPU bf16
    autocast (Lightning's bf16-mixed), else in fp32.
    """
    torch.manual_seed(seed)
    model = build_model(profile, num_layers=layers, frames=frames, resolution=resolution,
                        gradient_checkpointing=checkpointing, **overrides)
    model.train()
    cfg = model.cfg
    tf = model.transformer
    if bool(getattr(tf, "gradient_checkpointing", False)) != checkpointing:
        raise RuntimeError(f"VideoFlowModel did not set gradient checkpointing to {checkpointing}")
    exclude = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved = SavedTensorBytes(exclude)
    calls = [0]
    if checkpointing:  # wrap what diffusers installed, to see the block inputs it keeps alive
        installed = tf._gradient_checkpointing_func

        def counting(block, *args):
            calls[0] += 1
            for a in tree_flatten(args)[0]:
                if isinstance(a, torch.Tensor):
                    saved.add(a, "checkpoint_input")
            return installed(block, *args)

        tf._gradient_checkpointing_func = counting
    sft = sft_profile(profile)
    module = SimpleNamespace(model=model, cfg=sft.model_copy(update={"model": cfg}))
    gen = torch.Generator().manual_seed(seed)
    live = LiveTensorBytes(exclude)
    t0 = time.perf_counter()
    with live, warnings.catch_warnings():
        # CPU rms_norm with bf16 input and fp32 weight takes the composite path: a harmless per-call warning
        warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
        data = make_batch(cfg, batch, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext():
            with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                loss = SFTModule.flow_loss(module, data)
        end_of_forward = live.current
        loss.backward()
    seconds = time.perf_counter() - t0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grad_bytes = sum(g.numel() * g.element_size() for g in grads)
    # parameter gradients are counted in the static part (all of them, as after backward or while
    # accumulating); the activation peak is the live peak without them
    activation_peak = live.peak_without(live.allocation_ids(grads))
    return {"profile": profile, "batch": batch, "layers": layers, "frames": frames, "resolution": resolution,
            "tokens": tokens_per_video(cfg), "checkpointing": checkpointing, "autocast_bf16": autocast,
            "saved_bytes": saved.total, "saved_by_dtype": saved.by(1), "saved_by_kind": saved.by(2),
            "live_end_of_forward_bytes": end_of_forward, "live_peak_bytes": live.peak,
            "activation_peak_bytes": activation_peak, "grad_bytes": grad_bytes,
            "checkpointed_block_calls": calls[0], "attention_kernels": sorted(saved.kernels),
            "seconds": round(seconds, 2)}


# ---------------------------------------------------------------------- fit and extrapolation
def _features(B: float, L: float, N: float) -> list[float]:
    return [1.0, B, L, N, B * L, B * N, L * N, B * L * N]


def fit_trilinear(rows: list[dict], key: str) -> np.ndarray:
    """Coefficients of ``key`` in 1, B, L, N, BL, BN, LN, BLN from (at least) the 2 x 2 x 2 grid."""
    X = np.array([_features(r["batch"], r["layers"], r["tokens"]) for r in rows])
    y = np.array([float(r[key]) for r in rows])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef


def predict(coef: np.ndarray, B: float, L: float, N: float) -> float:
    return float(np.dot(coef, _features(B, L, N)))


def measure_rows(profile: str, ckpt: bool, bf16: bool, log=print) -> list[dict]:
    """The 2 x 2 x 2 grid of (B, L, N) of a profile, then its check point (last row)."""
    g = GRID[profile]
    points = [(b, l, f) for b in g["batches"] for l in g["layers"] for f in g["frames"]] + [g["check"]]
    rows = []
    for b, l, f in points:
        r = measure_step(profile, batch=b, layers=l, frames=f, resolution=g["resolution"], checkpointing=ckpt,
                         autocast=bf16)
        rows.append(r)
        log(f"{profile} {'bf16-mixed' if bf16 else 'fp32'} ckpt={ckpt} B={b} L={l} N={r['tokens']}: saved "
            f"{r['saved_bytes'] / 2**20:.1f} MiB, activation peak {r['activation_peak_bytes'] / 2**20:.1f} MiB, "
            f"gradients {r['grad_bytes'] / 2**20:.1f} MiB ({r['seconds']} s)")
    return rows


class ActivationModel:
    """Activation peak of a training step as a function of (B, L, N), from the saved-tensor fits.

    * without checkpointing: saved(B, L, N) + r A(B, N);
    * with checkpointing: saved_ckpt(B, L, N) (what stays alive: tensors outside the blocks and every
      block's input) + A(B, N) (one block recomputed in backward) + r A(B, N);

    where A(B, N) is one block's saved activations (the L slope of the no-checkpointing fit) and r A the
    transient of backward through one block (gradient temporaries), r the largest measured
    (activation peak - saved) / A over the no-checkpointing rows. Saved bytes are exactly trilinear
    (check errors ~1e-15); the live peak is a maximum over phases and at the tiny measured sizes is not,
    so it is used for r and as a check of this model (``check_ratios``), not extrapolated itself.
    """

    def __init__(self, rows_off: list[dict], rows_on: list[dict]) -> None:
        self.c_off = fit_trilinear(rows_off[:-1], "saved_bytes")
        self.c_on = fit_trilinear(rows_on[:-1], "saved_bytes")
        self.r = max((row["activation_peak_bytes"] - row["saved_bytes"]) / self.block(row["batch"], row["tokens"])
                     for row in rows_off)

    def block(self, B: float, N: float) -> float:
        return predict(self.c_off, B, 1, N) - predict(self.c_off, B, 0, N)

    def saved(self, ckpt: bool, B: float, L: float, N: float) -> float:
        return predict(self.c_on if ckpt else self.c_off, B, L, N)

    def peak(self, ckpt: bool, B: float, L: float, N: float) -> float:
        return self.saved(ckpt, B, L, N) + ((1.0 if ckpt else 0.0) + self.r) * self.block(B, N)


def measure_profile(profile: str, precisions: tuple[bool, ...] = (True, False), log=print,
                    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32)) -> dict[str, Any]:
    """Grid + check measurements of one profile, the activation model, and its full-size estimates."""
    sft = sft_profile(profile)
    full = sft.model
    L_full = WAN_1_3B["num_layers"] if full.latent else full.num_layers
    N_full = tokens_per_video(full)
    counts = parameter_counts(profile)
    P, T = counts["parameters"], counts["trainable"]
    static = {
        "parameters_fp32": 4 * (P + counts.get("vae_parameters", 0)),
        "gradients_fp32": 4 * T,
        "adamw_moments_fp32": 8 * T,
        "ema_shadow_fp32": 4 * T if sft.ema_decay else 0,
        "optimizer_step_temporary_fp32": 4 * T,
        "cuda_context_and_workspaces": int(CUDA_CONTEXT_GIB * GIB),
    }
    static_bytes = sum(static.values())
    out: dict[str, Any] = {"profile": profile, **counts, "layers": L_full, "tokens_per_video": N_full,
                           "frames": full.frames, "resolution": full.resolution, "patch_size": list(full.patch_size),
                           "batch_size": sft.batch_size, "accumulate_grad_batches": sft.accumulate_grad_batches,
                           "gradient_checkpointing_configured": full.gradient_checkpointing,
                           "static_bytes": static, "static_gib": static_bytes / GIB, "estimates": {}, "rows": []}
    budget = (1 - MARGIN) * GPU_GIB * GIB
    for bf16 in precisions:
        tag = "bf16_mixed" if bf16 else "fp32"
        rows = {ckpt: measure_rows(profile, ckpt, bf16, log) for ckpt in (False, True)}
        am = ActivationModel(rows[False], rows[True])
        for ckpt in (False, True):
            check = rows[ckpt][-1]
            ratios = [am.peak(ckpt, r["batch"], r["layers"], r["tokens"]) / r["activation_peak_bytes"]
                      for r in rows[ckpt]]
            fixed = am.peak(ckpt, 0, L_full, N_full)
            per_sample = am.peak(ckpt, 1, L_full, N_full) - fixed
            saved_fixed = am.saved(ckpt, 0, L_full, N_full)
            max_batch = int(math.floor((budget - static_bytes - fixed) / per_sample))
            out["estimates"][f"{tag}/{'checkpointing' if ckpt else 'no_checkpointing'}"] = {
                "saved_check_rel_error": am.saved(ckpt, check["batch"], check["layers"], check["tokens"])
                / check["saved_bytes"] - 1.0,
                "peak_model_over_measured": {"min": min(ratios), "max": max(ratios), "check": ratios[-1]},
                "transient_ratio_r": am.r,
                "block_saved_per_sample_gib": (am.block(1, N_full) - am.block(0, N_full)) / GIB,
                "block_saved_batch_independent_gib": am.block(0, N_full) / GIB,
                "saved_per_sample_gib": (am.saved(ckpt, 1, L_full, N_full) - saved_fixed) / GIB,
                "saved_batch_independent_gib": saved_fixed / GIB,
                "activation_peak_per_sample_gib": per_sample / GIB,
                "activation_peak_batch_independent_gib": fixed / GIB,
                "peak_gib": (static_bytes + fixed + sft.batch_size * per_sample) / GIB,
                "peak_gib_at_batch": {b: (static_bytes + fixed + b * per_sample) / GIB for b in batches},
                "max_batch_in_budget": max(0, max_batch),
                "attention_kernels": sorted({k for r in rows[False] for k in r["attention_kernels"]}),
                "checkpointed_block_calls": [r["checkpointed_block_calls"] for r in rows[ckpt]],
            }
        out["rows"].extend(rows[False] + rows[True])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", nargs="+", default=["gpu", "pretrained"])
    ap.add_argument("--quick", action="store_true", help="bf16-mixed only (no fp32 upper bound)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions = (True,) if args.quick else (True, False)
    results = {}
    for p in args.profiles:
        results[p] = measure_profile(p, precisions)
        r = results[p]
        print(f"== {p}: {r['parameters'] / 1e6:.1f} M parameters, {r['trainable'] / 1e6:.2f} M trainable, "
              f"batch {r['batch_size']}, N = {r['tokens_per_video']} tokens, L = {r['layers']}")
        for k, e in r["estimates"].items():
            print(f"   {k}: peak {e['peak_gib']:.1f} GiB at batch {r['batch_size']}, largest batch in "
                  f"{(1 - MARGIN) * GPU_GIB:.0f} GiB: {e['max_batch_in_budget']}; model / measured peak "
                  f"{e['peak_model_over_measured']['min']:.2f}-{e['peak_model_over_measured']['max']:.2f}, "
                  f"saved check error {e['saved_check_rel_error']:+.1e}")
            print("      peak GiB by batch: " + ", ".join(f"{b}: {v:.1f}" for b, v in e["peak_gib_at_batch"].items()))
    write_result("memory", {"gpu_gib": GPU_GIB, "margin": MARGIN, "budget_gib": (1 - MARGIN) * GPU_GIB,
                            "cuda_context_gib": CUDA_CONTEXT_GIB, "threads": args.threads, "grid": GRID,
                            "profiles": results})
    return results


if __name__ == "__main__":
    main()

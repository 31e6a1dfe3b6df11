"""Video model: backbone shapes per preset, flow-matching math, Euler sampler, overfitting, checkpoints,
and the pretrained (local Wan folder + LoRA) preset."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from ml.models.backbone import PretrainedNotFoundError, VideoFlowModel, build_video_model  # noqa: E402
from ml.models.checkpoint import load_video_model, read_checkpoint, save_video_model  # noqa: E402
from ml.models.config import model_preset  # noqa: E402
from ml.models.flow_matching import (  # noqa: E402
    flow_matching_loss, interpolate, sample_timesteps, target_velocity, timestep_grid, x0_from_velocity)
from ml.models.sampling import euler_sample  # noqa: E402


def _inputs(B: int, K: int, R: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 3, K, R, R, generator=g), torch.rand(B, generator=g),
            torch.rand(B, 3, R, R, generator=g) * 2 - 1)


@pytest.mark.parametrize("preset", ["ci", "demo"])
def test_forward_shapes(preset):
    cfg = model_preset(preset)
    model = VideoFlowModel(cfg)
    assert model.transformer.config.in_channels == 7 and model.transformer.config.out_channels == 3
    K, R = (cfg.frames, cfg.resolution) if preset == "ci" else (3, cfg.resolution)
    x, s, c = _inputs(2, K, R)
    with torch.no_grad():
        v = model(x, s, c)
    assert v.shape == x.shape and torch.isfinite(v).all()
    assert model.latent_shape() == (3, cfg.frames, cfg.resolution, cfg.resolution)


def test_demo_and_gpu_sizes():
    demo = VideoFlowModel(model_preset("demo"))
    assert 0.8e6 < demo.n_parameters() < 2.5e6
    gpu = VideoFlowModel(model_preset("gpu"))
    assert gpu.n_parameters() > 20e6
    x, s, c = _inputs(1, 1, 16)  # the transformer takes any size divisible by the patch
    with torch.no_grad():
        assert gpu(x, s, c).shape == x.shape


def test_signaling_tokens_forward_and_mask():
    cfg = model_preset("ci", signaling_tokens=True, max_records=6)
    model = VideoFlowModel(cfg).eval()
    x, s, c = _inputs(2, 5, 32)
    tok = torch.rand(2, 6, 4)
    tok[..., 3] = torch.tensor([0, 1, 2, 3, 4, 5]).float()
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        v = model(x, s, c, tok, mask)
        assert v.shape == x.shape
        # padded rows do not matter
        tok2 = tok.clone()
        tok2[1, 3:] = 99.0
        assert torch.allclose(model(x, s, c, tok2, mask), v, atol=1e-5)
        # the records do matter
        assert not torch.allclose(model(x, s, c, torch.rand(2, 6, 4), mask), v, atol=1e-4)


def test_flow_matching_math():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 3, 2, 4, 4, generator=g)
    e = torch.randn(3, 3, 2, 4, 4, generator=g)
    s = torch.tensor([0.0, 0.5, 1.0])
    xs = interpolate(x0, e, s)
    assert torch.allclose(xs[0], x0[0]) and torch.allclose(xs[2], e[2])
    assert torch.allclose(xs[1], 0.5 * (x0[1] + e[1]))
    v = target_velocity(x0, e)
    assert torch.allclose(v, e - x0)
    # the straight path: moving by (s' - s) v from x_s lands on x_s'
    s2 = torch.tensor([0.2, 0.3, 0.9])
    assert torch.allclose(interpolate(x0, e, s2), xs + (s2 - s).view(-1, 1, 1, 1, 1) * v, atol=1e-6)
    assert float(flow_matching_loss(v, x0, e)) == 0.0
    assert float(flow_matching_loss(v + 1.0, x0, e)) == pytest.approx(1.0)
    assert torch.allclose(x0_from_velocity(xs, v, s), x0, atol=1e-6)
    ts = sample_timesteps(20000, torch.Generator().manual_seed(1))
    assert 0 < float(ts.min()) and float(ts.max()) < 1 and abs(float(ts.mean()) - 0.5) < 0.01
    shifted = sample_timesteps(20000, torch.Generator().manual_seed(1), shift=3.0)
    assert float(shifted.mean()) > 0.6  # shift > 1 moves time toward noise
    grid = timestep_grid(4)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and (grid[1:] < grid[:-1]).all()


def test_euler_exact_velocity_recovers_x0():
    model = VideoFlowModel(model_preset("ci"))
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 9, 32, 32, generator=g) * 1.6 - 0.8
    cond = torch.zeros(2, 3, 32, 32)

    def exact(x, s, *args, cond=None):  # the flow of a point mass at x0: v = (x - x0) / s
        return (x - x0) / s.view(-1, 1, 1, 1, 1)

    for steps, shift in ((1, 1.0), (7, 3.0)):
        out = euler_sample(model, cond, steps, torch.Generator().manual_seed(5), velocity_fn=exact, shift=shift)
        assert torch.allclose(out, x0, atol=1e-5)


def test_ci_overfits_one_batch():
    torch.manual_seed(0)
    from ml.models.data import RenderedVideoDataset, make_toy_rendered_arrays
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        make_toy_rendered_arrays(d, n=4, resolution=32, frames=5, seed=1)
        ds = RenderedVideoDataset(d)
        video = torch.stack([ds[i]["video"] for i in range(4)])
        cond = torch.stack([ds[i]["cond"] for i in range(4)])
    model = VideoFlowModel(model_preset("ci", frames=5))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def eval_loss() -> float:
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            losses = []
            for _ in range(3):
                e = torch.randn(video.shape, generator=g)
                s = sample_timesteps(4, g)
                losses.append(float(flow_matching_loss(model(interpolate(video, e, s), s, cond), video, e)))
        return sum(losses) / len(losses)

    before = eval_loss()
    for _ in range(80):
        e = torch.randn_like(video)
        s = sample_timesteps(4)
        loss = flow_matching_loss(model(interpolate(video, e, s), s, cond), video, e)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.35 * before, (before, after)


def test_checkpoint_round_trip(tmp_path):
    cfg = model_preset("ci", signaling_tokens=True)
    model = VideoFlowModel(cfg).eval()
    path = save_video_model(tmp_path / "m.pt", model, meta={"global_step": 7})
    obj = read_checkpoint(path)
    assert obj["format"] == "sig2gps-video-model" and obj["meta"]["global_step"] == 7 and not obj["partial"]
    loaded, cfg2 = load_video_model(path)
    assert cfg2 == cfg
    x, s, c = _inputs(1, 9, 32)
    tok, mask = torch.rand(1, 4, 4), torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model(x, s, c, tok, mask), loaded(x, s, c, tok, mask))
    with pytest.raises(ValueError, match="not a sig2gps-video-model"):
        torch.save({"state_dict": {}}, tmp_path / "bad.pt")
        load_video_model(tmp_path / "bad.pt")


# ---------------------------------------------------------------- pretrained preset (local folder, LoRA)
def _tiny_wan_folder(root, in_channels: int = 4):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
                           latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    tr = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                               in_channels=in_channels, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32,
                               num_layers=1)
    vae.save_pretrained(root / "vae")
    tr.save_pretrained(root / "transformer")
    return root


def test_pretrained_preset_loads_local_folder_with_lora(tmp_path):
    folder = _tiny_wan_folder(tmp_path / "wan")
    cfg = model_preset("pretrained", pretrained_path=str(folder), resolution=32, frames=5, lora_rank=4,
                       lora_alpha=4, gradient_checkpointing=False)
    model = build_video_model(cfg)
    assert model.latent and model.latent_shape() == (4, 3, 16, 16)
    assert model.transformer.config.in_channels == 9  # widened: noisy 4 + cond 4 + mask 1
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable) and not any(n.startswith("vae.") for n in trainable)
    assert not any(n.endswith("to_q.base_layer.weight") for n in trainable)
    x = torch.randn(2, *model.latent_shape())
    v = model(x, torch.rand(2), torch.rand(2, 3, 32, 32) * 2 - 1)
    assert v.shape == x.shape
    v.square().mean().backward()
    assert model.transformer.blocks[0].attn1.to_q.lora_B["default"].weight.grad is not None
    video = euler_sample(model, torch.zeros(1, 3, 32, 32), 2, torch.Generator().manual_seed(0))
    assert video.shape == (1, 3, 5, 32, 32) and video.abs().max() <= 1.0
    # partial checkpoint: only the trainable weights, the base comes from the folder again
    with torch.no_grad():
        model.transformer.blocks[0].attn1.to_q.lora_B["default"].weight.fill_(0.01)
    path = save_video_model(tmp_path / "lora.pt", model)
    obj = read_checkpoint(path)
    assert obj["partial"] and all(not k.startswith("vae.") for k in obj["state_dict"])
    loaded, _ = load_video_model(path)
    c = torch.rand(1, 3, 32, 32)
    xs = torch.randn(1, *model.latent_shape())
    with torch.no_grad():
        assert torch.allclose(model.eval()(xs, torch.tensor([0.5]), c), loaded(xs, torch.tensor([0.5]), c), atol=1e-5)


def test_pretrained_missing_folder_is_a_clear_error(tmp_path):
    cfg = model_preset("pretrained", pretrained_path=str(tmp_path / "nowhere"))
    with pytest.raises(PretrainedNotFoundError, match="nowhere.*transformer/config.json.*never downloads"):
        build_video_model(cfg)


@pytest.mark.parametrize("s_val", [1.0, 0.5, 0.1])
def test_x0_prediction_gives_the_exact_velocity(s_val):
    """With x0-prediction, a network that outputs the true clean video yields v = e - x0 exactly."""
    cfg = model_preset("ci", resolution=16, frames=5)
    assert cfg.prediction == "x0"
    model = build_video_model(cfg)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 5, 16, 16, generator=g) * 2 - 1
    e = torch.randn(2, 3, 5, 16, 16, generator=g)
    x_s = interpolate(x0, e, torch.full((2,), s_val))
    model.transformer.forward = lambda **kw: (x0,)  # an oracle network: outputs the true x0
    v = model(x_s, torch.full((2,), s_val), torch.zeros(2, 3, 16, 16))
    assert torch.allclose(v, target_velocity(x0, e), atol=1e-4)


def test_pretrained_preset_keeps_velocity_prediction():
    assert model_preset("pretrained").prediction == "velocity"


def test_shipped_base_model_matches_the_demo_preset():
    """The base checkpoint in models/ loads and has the sizes the demo profile fine-tunes."""
    from ml.models.config import sft_profile
    from ml.train.sft import _resolve_init

    cfg = sft_profile("demo")
    assert cfg.init_checkpoint, "the demo profile fine-tunes the shipped base model"
    model, base_cfg = load_video_model(_resolve_init(cfg.init_checkpoint))
    demo = cfg.model
    for field in ("patch_size", "num_layers", "num_heads", "head_dim", "prediction", "resolution", "frames"):
        assert getattr(base_cfg, field) == getattr(demo, field), field

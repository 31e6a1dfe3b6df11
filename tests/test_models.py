"""Video model: backbone shapes per preset and target, flow-matching math, Euler sampler, overfitting,
checkpoints, the drawing layer (ml.models.layer), and the pretrained (local Wan folder + LoRA) preset."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from ml.models.backbone import PretrainedNotFoundError, VideoFlowModel, build_video_model  # noqa: E402
from ml.models.checkpoint import load_video_model, read_checkpoint, save_video_model  # noqa: E402
from ml.models.config import model_preset
from ml.train.sft.config import SFTConfig  # noqa: E402
from ml.models.flow_matching import (  # noqa: E402
    flow_matching_loss, foreground_weights, interpolate, sample_timesteps, target_velocity, timestep_grid,
    x0_from_velocity)
from ml.models.layer import (  # noqa: E402
    composite_layer, drawn_head_positions, head_position_loss, head_positions, layer_from_video, prior_positions,
    signal_prior)
from ml.models.sampling import euler_sample  # noqa: E402

#: explicit settings of the RGB target without the signaling prior (the paper's pixel-space model)
RGB = dict(target="rgb", signal_prior=False, prior_residual=False)
#: the default: a 2-channel drawing layer over the condition image, started from the signaling prior
LAYER: dict = {}
TARGETS = {"layer": LAYER, "rgb": RGB}


def _inputs(B: int, K: int, R: int, seed: int = 0, C: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, C, K, R, R, generator=g), torch.rand(B, generator=g),
            torch.rand(B, 3, R, R, generator=g) * 2 - 1)


def _tokens(B: int, n: int, seed: int = 0):
    """Random records (B, n, 4) in the ml.models.tokens format (time column 2 sorted) and an all-True mask."""
    g = torch.Generator().manual_seed(seed)
    tok = torch.rand(B, n, 4, generator=g)
    tok[..., 2] = tok[..., 2].sort(dim=1).values
    tok[..., 3] = torch.randint(0, 6, (B, n), generator=g).float()
    return tok, torch.ones(B, n, dtype=torch.bool)


def _toy_batch(n: int = 4, resolution: int = 32, frames: int = 5, seed: int = 1) -> dict[str, torch.Tensor]:
    """A batch of the toy rendered arrays (make_toy_rendered_arrays) with their record tokens."""
    import tempfile

    from ml.models.data import RenderedVideoDataset, make_toy_rendered_arrays

    with tempfile.TemporaryDirectory() as d:
        make_toy_rendered_arrays(d, n=n, resolution=resolution, frames=frames, seed=seed)
        ds = RenderedVideoDataset(d, with_tokens=True)
        items = [ds[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in ("video", "cond", "tokens", "token_mask")}


def test_toy_arrays_follow_the_render_colour_contract(tmp_path):
    """The toy windows use only ``ml.render.style`` colours, so the decoder reads them as rendered ones."""
    from ml.decode import decode_head_positions
    from ml.models.data import make_toy_rendered_arrays
    from ml.render import style
    from ml.render.arrays import RenderedArrays

    ra = RenderedArrays(make_toy_rendered_arrays(tmp_path / "toy", n=4, resolution=32, frames=5, seed=2))
    map_colours = {style.BACKGROUND, style.TOWER, *((g, g, g) for g in style.ROAD_GREY)}
    for i in range(len(ra)):
        cond, video = np.asarray(ra.cond(i)), np.asarray(ra.video(i))
        cond_colours = {tuple(int(v) for v in c) for c in np.unique(cond.reshape(-1, 3), axis=0)}
        video_colours = {tuple(int(v) for v in c) for c in np.unique(video.reshape(-1, 3), axis=0)}
        assert style.BACKGROUND in cond_colours and cond_colours <= map_colours, cond_colours - map_colours
        assert {style.PATH, style.HEAD} <= video_colours <= map_colours | {style.PATH, style.HEAD}, video_colours
        # the decoder finds the head dot of every frame where it was drawn
        head = np.all(video == np.asarray(style.HEAD, np.uint8), axis=-1)
        want = np.array([[c.mean() + 0.5, r.mean() + 0.5] for r, c in (np.nonzero(h) for h in head)])
        np.testing.assert_allclose(decode_head_positions(video), want, atol=0.5)


# channels (transformer in, out) per target: noisy C + condition (RGB 3, + prior layer 2) + frame mask 1
@pytest.mark.parametrize("preset", ["ci", "demo"])
@pytest.mark.parametrize("target, channels", [("layer", (8, 2)), ("rgb", (7, 3)), ("rgb+prior", (9, 3))],
                         ids=["layer", "rgb", "rgb+prior"])
def test_forward_shapes(preset, target, channels):
    overrides = {"layer": LAYER, "rgb": RGB, "rgb+prior": dict(target="rgb")}[target]
    cfg = model_preset(preset, **overrides)
    model = VideoFlowModel(cfg)
    C = channels[1]
    assert (model.transformer.config.in_channels, model.transformer.config.out_channels) == channels
    assert model.latent_shape() == (C, cfg.frames, cfg.resolution, cfg.resolution)
    K, R = (cfg.frames, cfg.resolution) if preset == "ci" else (3, cfg.resolution)
    x, s, c = _inputs(2, K, R, C=C)
    tok, mask = _tokens(2, 5) if cfg.uses_records else (None, None)
    with torch.no_grad():
        v = model(x, s, c, tok, mask)
        assert v.shape == x.shape and torch.isfinite(v).all()
        if cfg.signal_prior:  # the prior is computed from the records: without them, a clear error
            with pytest.raises(ValueError, match="signal_prior"):
                model(x, s, c)


def test_demo_and_gpu_sizes():
    demo = VideoFlowModel(model_preset("demo"))
    assert 0.8e6 < demo.n_parameters() < 2.5e6
    gpu = VideoFlowModel(model_preset("gpu"))
    assert gpu.n_parameters() > 20e6
    x, s, c = _inputs(1, 1, 16, C=2)  # the transformer takes any size divisible by the patch
    tok, mask = _tokens(1, 3)
    with torch.no_grad():
        assert gpu(x, s, c, tok, mask).shape == x.shape


@pytest.mark.parametrize("target", ["rgb", "layer"])
def test_signaling_tokens_forward_and_mask(target):
    """rgb (no prior): the records reach the model through cross-attention only; layer (the default): also
    through the signaling prior. Either way padded rows do not matter and the records do."""
    cfg = model_preset("ci", signaling_tokens=True, max_records=6, **TARGETS[target])
    model = VideoFlowModel(cfg).eval()
    C = model.latent_shape()[0]
    x, s, c = _inputs(2, 5, 32, C=C)
    tok, _ = _tokens(2, 6)
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
        other, _ = _tokens(2, 6, seed=1)
        assert not torch.allclose(model(x, s, c, other, mask), v, atol=1e-4)


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
    assert float(flow_matching_loss(v + 1.0, x0, e, space="velocity")) == pytest.approx(1.0)
    # x0 space: the error of the implied clean sample x_s - s v, i.e. the velocity error times s
    assert float(flow_matching_loss(v, x0, e, xs, s, space="x0")) == pytest.approx(0.0, abs=1e-10)
    assert float(flow_matching_loss(v + 1.0, x0, e, xs, s, space="x0")) == pytest.approx(float((s ** 2).mean()))
    with pytest.raises(ValueError, match="x_s and s"):
        flow_matching_loss(v, x0, e, space="x0")
    # weights: a weighted mean normalised by the weights (constant weights change nothing)
    err = torch.zeros_like(v)
    err[0] = 1.0
    w = torch.ones(3, 1, 1, 1, 1)
    assert float(flow_matching_loss(v + err, x0, e, weight=3.0 * w)) == pytest.approx(1 / 3)
    w[0] = 2.0
    assert float(flow_matching_loss(v + err, x0, e, weight=w)) == pytest.approx(2 / 4)
    # foreground weights: `weight` where a layer channel (target or prior) is drawn (> 0), 1 elsewhere
    layer = -torch.ones(1, 2, 1, 2, 2)
    layer[0, 0, 0, 0, 0] = 1.0
    prior = -torch.ones_like(layer)
    prior[0, 1, 0, 1, 1] = 0.5
    fw = foreground_weights(layer, prior, 20.0)
    assert fw.shape == (1, 1, 1, 2, 2) and fw.flatten().tolist() == [20.0, 1.0, 1.0, 20.0]
    assert torch.allclose(x0_from_velocity(xs, v, s), x0, atol=1e-6)
    ts = sample_timesteps(20000, torch.Generator().manual_seed(1))
    assert 0 < float(ts.min()) and float(ts.max()) < 1 and abs(float(ts.mean()) - 0.5) < 0.01
    shifted = sample_timesteps(20000, torch.Generator().manual_seed(1), shift=3.0)
    assert float(shifted.mean()) > 0.6  # shift > 1 moves time toward noise
    grid = timestep_grid(4)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and (grid[1:] < grid[:-1]).all()


@pytest.mark.parametrize("target", ["rgb", "layer"])
def test_euler_exact_velocity_recovers_x0(target):
    model = VideoFlowModel(model_preset("ci", **TARGETS[target]))
    C = model.latent_shape()[0]
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, C, 9, 32, 32, generator=g) * 1.6 - 0.8
    cond = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    tok, mask = _tokens(2, 4) if model.cfg.uses_records else (None, None)

    def exact(x, s, *args, cond=None):  # the flow of a point mass at x0: v = (x - x0) / s
        return (x - x0) / s.view(-1, 1, 1, 1, 1)

    for steps, shift in ((1, 1.0), (7, 3.0)):
        kw = dict(tokens=tok, token_mask=mask, velocity_fn=exact, shift=shift)
        out = euler_sample(model, cond, steps, torch.Generator().manual_seed(5), return_model_space=True, **kw)
        assert torch.allclose(out, x0, atol=1e-5)
        # decoded pixels: the RGB sample itself, or the layer composited over the condition image
        video = euler_sample(model, cond, steps, torch.Generator().manual_seed(5), **kw)
        expected = x0 if target == "rgb" else composite_layer(cond, x0)
        assert video.shape == (2, 3, 9, 32, 32) and torch.allclose(video, expected, atol=1e-5)


@pytest.mark.parametrize("target", ["layer", "rgb"])
def test_ci_overfits_one_batch(target):
    """layer (the default): x0 is the model's own encode_video (the drawing layer) and the loss the SFT
    default objective (SFTConfig: loss_space, foreground_weight). rgb (no prior): the plain velocity MSE."""
    torch.manual_seed(0)
    b = _toy_batch(n=4, resolution=32, frames=5, seed=1)
    cond, tok, mask = b["cond"], b["tokens"], b["token_mask"]
    model = VideoFlowModel(model_preset("ci", frames=5, **TARGETS[target]))
    x0 = model.encode_video(b["video"])
    assert x0.shape == (4, model.latent_shape()[0], 5, 32, 32)
    if target == "layer":
        sft = SFTConfig()
        prior = model.prior_model_space(model.encode_condition(cond, tok, mask, frames=5))
        space, weight = sft.loss_space, foreground_weights(x0, prior, sft.foreground_weight)
    else:
        space, weight = "velocity", None
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_fn(e: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        xs = interpolate(x0, e, s)
        return flow_matching_loss(model(xs, s, cond, tok, mask), x0, e, xs, s, space=space, weight=weight)

    def eval_loss() -> float:
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            losses = [float(loss_fn(torch.randn(x0.shape, generator=g), sample_timesteps(4, g))) for _ in range(3)]
        return sum(losses) / len(losses)

    before = eval_loss()
    for _ in range(80):
        loss = loss_fn(torch.randn_like(x0), sample_timesteps(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.35 * before, (before, after)


@pytest.mark.parametrize("target", ["rgb", "layer"])
def test_checkpoint_round_trip(tmp_path, target):
    cfg = model_preset("ci", signaling_tokens=True, **TARGETS[target])
    model = VideoFlowModel(cfg).eval()
    if cfg.prior_residual:  # the output projection starts at zero: give the network a say in the output
        with torch.no_grad():
            model.transformer.proj_out.weight.normal_(0.0, 0.02)
            model.transformer.proj_out.bias.normal_(0.0, 0.02)
    path = save_video_model(tmp_path / "m.pt", model, meta={"global_step": 7})
    obj = read_checkpoint(path)
    assert obj["format"] == "sig2gps-video-model" and obj["meta"]["global_step"] == 7 and not obj["partial"]
    loaded, cfg2 = load_video_model(path)
    assert cfg2 == cfg
    x, s, c = _inputs(1, 9, 32, C=model.latent_shape()[0])
    tok, mask = _tokens(1, 4)
    with torch.no_grad():
        out = model(x, s, c, tok, mask)
        assert torch.equal(out, loaded(x, s, c, tok, mask))
        if cfg.prior_residual:  # the round trip is not trivially the prior
            prior = signal_prior(tok, mask, 9, 32)
            assert not torch.allclose(out, (x - prior) / s.clamp_min(cfg.x0_min_s), atol=1e-4)
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


@pytest.mark.parametrize("target", ["rgb", "layer"])
@pytest.mark.parametrize("s_val", [1.0, 0.5, 0.1])
def test_x0_prediction_gives_the_exact_velocity(s_val, target):
    """With x0-prediction, a network that outputs the true clean video yields v = e - x0 exactly; with the
    residual prior (the default) the network's output is added to the prior, so the oracle outputs x0 - prior."""
    cfg = model_preset("ci", resolution=16, frames=5, **TARGETS[target])
    assert cfg.prediction == "x0" and cfg.prior_residual == (target == "layer")
    model = build_video_model(cfg)
    C = model.latent_shape()[0]
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, C, 5, 16, 16, generator=g) * 2 - 1
    e = torch.randn(2, C, 5, 16, 16, generator=g)
    x_s = interpolate(x0, e, torch.full((2,), s_val))
    tok, mask = _tokens(2, 4) if cfg.uses_records else (None, None)
    residual = x0 - signal_prior(tok, mask, 5, 16) if cfg.prior_residual else x0
    model.transformer.forward = lambda **kw: (residual,)  # an oracle network: outputs the true x0 (residual)
    v = model(x_s, torch.full((2,), s_val), torch.zeros(2, 3, 16, 16), tok, mask)
    assert torch.allclose(v, target_velocity(x0, e), atol=1e-4)


def test_pretrained_preset_keeps_velocity_prediction():
    assert model_preset("pretrained").prediction == "velocity"


def test_shipped_base_model_matches_the_demo_preset():
    """The base checkpoint in models/ loads and has the sizes the demo profile fine-tunes."""
    from ml.train.sft.config import sft_profile
    from ml.train.sft.loop import _resolve_init

    cfg = sft_profile("demo")
    assert cfg.init_checkpoint, "the demo profile fine-tunes the shipped base model"
    model, base_cfg = load_video_model(_resolve_init(cfg.init_checkpoint))
    demo = cfg.model
    for field in ("patch_size", "num_layers", "num_heads", "head_dim", "prediction", "resolution", "frames",
                  "target", "signal_prior", "prior_residual"):
        assert getattr(base_cfg, field) == getattr(demo, field), field


# ---------------------------------------------------------------- the drawing layer (ml.models.layer)
def test_layer_composite_reproduces_a_rendered_video():
    """composite_layer(cond, layer_from_video(video)) gives the rendered video back: pixel values to within the
    head blob's softness, and the decoder (ml.decode) reads the same head positions."""
    from ml.decode import decode_head_positions
    from ml.models.data import to_uint8_frames

    b = _toy_batch(n=4, resolution=32, frames=5, seed=1)
    video, cond = b["video"], b["cond"]
    layer = layer_from_video(video)
    assert layer.shape == (4, 2, 5, 32, 32) and layer.min() >= -1.0 and layer.max() <= 1.0
    rec = composite_layer(cond, layer)
    assert rec.shape == video.shape
    err = (rec - video).abs().mean(1)  # (B, K, H, W)
    # what differs is the rim of the head: a soft blob where the rendering has a hard disk
    assert float(err.mean()) < 0.015
    true_u8, rec_u8 = to_uint8_frames(video), to_uint8_frames(rec)
    for i in range(len(video)):
        truth, got = decode_head_positions(true_u8[i]), decode_head_positions(rec_u8[i])
        assert np.isfinite(truth).all() and np.isfinite(got).all()
        assert np.abs(got - truth).max() <= 0.75, (i, truth, got)
    # an empty layer draws nothing: the condition image on every frame
    assert torch.allclose(composite_layer(cond, -torch.ones_like(layer)), cond.unsqueeze(2).expand_as(video))


def test_prior_positions_interpolate_in_time_and_ignore_masked_rows():
    R, K = 32, 9  # frame times k / 8; positions on pixel centres (col + 0.5) so the blob peaks are unambiguous
    a, b, row = 8.5 / R, 24.5 / R, 16.5 / R
    tok = torch.zeros(2, 4, 4)
    # sample 0, rows out of time order: b at t = 0.75, a masked decoy, a at t = 0.25, a masked decoy
    tok[0, 0] = torch.tensor([b, row, 0.75, 0.0])
    tok[0, 1] = torch.tensor([0.0, 0.0, 0.5, 1.0])
    tok[0, 2] = torch.tensor([a, row, 0.25, 0.0])
    tok[0, 3] = torch.tensor([1.0, 1.0, 0.0, 2.0])
    mask = torch.tensor([[True, False, True, False], [False, False, False, False]])
    pos = prior_positions(tok, mask, K, R)
    assert pos.shape == (2, K, 2)
    cols = [8.5, 8.5, 8.5, 12.5, 16.5, 20.5, 24.5, 24.5, 24.5]  # held, linear from t = 0.25 to 0.75, held
    expected = torch.tensor([[c, 16.5] for c in cols])
    assert torch.allclose(pos[0], expected, atol=1e-5)
    # the masked rows do not matter (whatever they hold), and a window without records sits at the centre
    tok2 = tok.clone()
    tok2[0, [1, 3]] = torch.tensor([0.1, 0.9, 0.4, 3.0])
    assert torch.allclose(prior_positions(tok2, mask, K, R), pos)
    assert torch.allclose(prior_positions(tok[:, [0, 2]], None, K, R)[0], pos[0])  # = only the valid rows
    assert torch.allclose(pos[1], torch.full((K, 2), R / 2.0))
    # the prior layer draws its head blob there, and the path up to it
    layer = signal_prior(tok, mask, K, R)
    assert layer.shape == (2, 2, K, R, R) and layer.min() >= -1.0 and layer.max() <= 1.0
    peak = layer[0, 1].flatten(1).argmax(1)
    assert torch.equal(peak % R, torch.tensor([int(c) for c in cols])) and torch.equal(peak // R, torch.full((K,), 16))
    path = layer[0, 0, :, 16]  # (K, R): the row of the path
    assert (path[-1, 8:25] > 0).all() and (path[4, 8:17] > 0).all() and (path[4, 20:] < 0).all()


def test_untrained_prior_residual_model_samples_the_prior():
    """The default (prior_residual) model starts with a zero output projection: it samples the prior exactly."""
    cfg = model_preset("ci", frames=5)
    assert cfg.target == "layer" and cfg.signal_prior and cfg.prior_residual
    torch.manual_seed(0)
    model = VideoFlowModel(cfg).eval()
    b = _toy_batch(n=2, resolution=32, frames=5, seed=2)
    cond, tok, mask = b["cond"], b["tokens"], b["token_mask"]
    video = euler_sample(model, cond, 4, torch.Generator().manual_seed(0), tokens=tok, token_mask=mask)
    expected = composite_layer(cond, signal_prior(tok, mask, 5, 32))
    assert video.shape == (2, 3, 5, 32, 32)
    assert torch.allclose(video, expected.clamp(-1.0, 1.0), atol=1e-5)


def test_flow_from_the_prior_starts_and_ends_at_the_prior():
    """With ``source_noise`` the flow starts at prior + noise; an untrained residual model transports it to the
    prior exactly (its x0 prediction is the prior at every step)."""
    from ml.models.layer import composite_layer, signal_prior

    cfg = model_preset("ci", frames=5, max_records=8, source_noise=0.5)
    model = VideoFlowModel(cfg).eval()
    b = _toy_batch(n=2, resolution=32, frames=5, seed=2)
    noise = torch.randn(2, 2, 5, 32, 32, generator=torch.Generator().manual_seed(0))
    cond = model.encode_condition(b["cond"], b["tokens"], b["token_mask"], frames=5)
    prior = signal_prior(b["tokens"], b["token_mask"], 5, 32, cfg.head_blob_sigma_px)
    assert torch.allclose(model.source_sample(cond, noise), prior + 0.5 * noise, atol=1e-6)
    out = euler_sample(model, b["cond"], 3, noise=noise, tokens=b["tokens"], token_mask=b["token_mask"], frames=5)
    assert torch.allclose(out, composite_layer(b["cond"], prior).clamp(-1, 1), atol=1e-5)
    with pytest.raises(ValueError, match="source_noise"):
        model_preset("ci", signal_prior=False, prior_residual=False, source_noise=0.5)


def test_drawn_head_position_reads_a_blob_and_its_loss_pulls_toward_the_truth():
    # blobs at known sub-pixel positions (the prior layer draws them), away from the tile's edge
    tok = torch.tensor([[[0.21, 0.33, 0.0, 0.0], [0.74, 0.62, 1.0, 0.0]]])
    target = signal_prior(tok, None, frames=5, resolution=64)
    want = prior_positions(tok, None, 5, 64)
    exact, present = head_positions(target)
    assert present.all()
    torch.testing.assert_close(exact, want, atol=1e-3, rtol=0)
    drawn_xy, drawn = drawn_head_positions(target)
    assert drawn.all() and (drawn_xy - want).abs().max() < 0.2
    # a prediction 3 px off costs more than the truth itself, and its gradient moves the blob back
    off = torch.roll(target, shifts=3, dims=-1).clone().requires_grad_(True)
    loss_off = head_position_loss(off, target)
    assert loss_off > head_position_loss(target, target) + 1.0
    loss_off.backward()
    assert float(off.grad.abs().sum()) > 0
    step = off - 0.5 * off.grad / off.grad.abs().max()
    assert head_position_loss(step, target) < loss_off
    # frames without a head in the target, or with nothing drawn, are left out (none at all: zero loss)
    empty = torch.full_like(target, -1.0)
    assert float(head_position_loss(off.detach(), empty)) == 0.0
    assert float(head_position_loss(empty, target)) == 0.0

"""Traj-GDPO: advantages, the Lightning module, the train entry/CLI, and evidence that it learns.

The learning test uses a toy task small enough for a CPU test (12 px, 5 frames, 4 fixed
conditions): each condition asks for a straight path from a marked start to an end; the "SFT"
model is trained on a 50/50 mix of the correct video and the *reversed* one, so its rollouts are
crisp, connected paths that go the right way only half the time (direction reward about 0, real
variance inside each group). GDPO with the real rewards and the real decoder (ml.decode) must
move it toward the right direction. ``bench/gdpo.py`` reuses this toy for the ablations.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import torch
from skimage.draw import disk, line
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from ml.models.gdpo import (  # noqa: E402
    GDPOConfig,
    GDPOModule,
    evaluate_policy,
    gdpo_advantages,
    gdpo_profile,
    grpo_advantages,
    sample_rollouts,
)
from ml.render import style  # noqa: E402
from ml.rewards import RewardConfig, compute_rewards  # noqa: E402

# ====================================================================== advantages


def test_gdpo_advantages_hand_computed() -> None:
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    r_a = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])  # constant in group 1
    r_b = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    eps = 1e-6
    # by hand: group 0 of r_a: mean 2, population std sqrt(2/3)
    za = np.array([-1, 0, 1, 0, 0, 0]) / (math.sqrt(2 / 3) + eps)
    # r_b: group 0 mean 1/3, std sqrt(2)/3; group 1 mean 1/3, std sqrt(2)/3
    sb = math.sqrt(2) / 3 + eps
    zb = np.array([-1 / 3, -1 / 3, 2 / 3, 2 / 3, -1 / 3, -1 / 3]) / sb
    total = za + zb
    expected = (total - total.mean()) / (total.std() + eps)
    got = gdpo_advantages({"a": r_a, "b": r_b}, g, eps)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    # the constant reward contributes exactly 0 in its group (no NaN)
    only_a = gdpo_advantages({"a": r_a}, g, eps)
    assert torch.isfinite(only_a).all()
    assert torch.all(only_a[3:] == 0)


def test_grpo_advantages_and_degenerate_groups() -> None:
    g = torch.tensor([0, 0, 1, 1])
    r = {"a": torch.tensor([1.0, 3.0, 2.0, 2.0]), "b": torch.tensor([0.0, 0.0, 4.0, 0.0])}
    got = grpo_advantages(r, g)
    # sums: group 0 -> [1, 3] -> [-1, 1]; group 1 -> [6, 2] -> [1, -1]
    np.testing.assert_allclose(got.numpy(), [-1, 1, 1, -1], atol=1e-5)
    const = {"a": torch.ones(4), "b": torch.zeros(4)}
    for fn in (gdpo_advantages, grpo_advantages):
        out = fn(const, g)
        assert torch.isfinite(out).all() and torch.all(out == 0)
    # groups of one: no variance, no advantage
    assert torch.all(gdpo_advantages({"a": torch.tensor([1.0, 2.0])}, torch.tensor([0, 1])) == 0)


def test_gdpo_balances_rewards_of_different_scales() -> None:
    """GRPO's summed reward is dominated by the large-scale reward; GDPO weighs both equally."""
    g = torch.zeros(4, dtype=torch.long)
    r = {"big": torch.tensor([0.0, 100.0, 0.0, 100.0]), "small": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    grpo, gdpo = grpo_advantages(r, g), gdpo_advantages(r, g)
    assert grpo[2] < 0  # GRPO: the small reward barely moves sample 2 above sample 0
    assert gdpo[2] == pytest.approx(float(gdpo[1]), abs=1e-5)  # GDPO: both count the same
    assert gdpo[3] > gdpo[1] > gdpo[0]


# ====================================================================== toy task
K, R = 5, 12
START_MARK = style.RAMP_START
PAIRS = [((2, 3), (9, 3)), ((8, 2), (8, 9)), ((9, 9), (2, 9)), ((3, 9), (3, 2))]  # (col, row) start -> end


def _draw(a: tuple[int, int], b: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Video (K, R, R, 3) drawing a -> b progressively with a head dot; true head (K, 2) pixel centres."""
    pa, pb = np.array(a, float), np.array(b, float)
    video = np.empty((K, R, R, 3), np.uint8)
    heads = np.zeros((K, 2))
    for k in range(K):
        f = np.empty((R, R, 3), np.uint8)
        f[:] = style.BACKGROUND
        h = pa + (pb - pa) * k / (K - 1)
        rr, cc = line(int(round(pa[1])), int(round(pa[0])), int(round(h[1])), int(round(h[0])))
        f[rr, cc] = style.PATH
        rr, cc = disk((round(h[1]), round(h[0])), 1.5, shape=(R, R))
        f[rr, cc] = style.HEAD
        video[k] = f
        heads[k] = h + 0.5
    return video, heads


def _cond(a: tuple[int, int], b: tuple[int, int]) -> np.ndarray:
    f = np.empty((R, R, 3), np.uint8)
    f[:] = style.BACKGROUND
    rr, cc = line(a[1], a[0], b[1], b[0])
    f[rr, cc] = style.ROAD_GREY[3]
    rr, cc = disk((a[1], a[0]), 1.5, shape=(R, R))
    f[rr, cc] = START_MARK
    return f


def _to_model(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).float().div(127.5).sub(1.0)


def make_toy_task() -> dict[str, torch.Tensor]:
    """The 4 fixed conditions: cond (4, 3, R, R), video / reversed (4, 3, K, R, R), true_head_px, mpp."""
    vids, revs, conds, heads = [], [], [], []
    for a, b in PAIRS:
        v, h = _draw(a, b)
        r, _ = _draw(b, a)
        vids.append(v), revs.append(r), conds.append(_cond(a, b)), heads.append(h)
    return {
        "cond": _to_model(np.stack(conds)).permute(0, 3, 1, 2).contiguous(),
        "video": _to_model(np.stack(vids)).permute(0, 4, 1, 2, 3).contiguous(),
        "reversed": _to_model(np.stack(revs)).permute(0, 4, 1, 2, 3).contiguous(),
        "true_head_px": torch.tensor(np.stack(heads), dtype=torch.float32),
        "mpp": torch.full((len(PAIRS),), 10.0),
    }


class ToyVelocityNet(nn.Module):
    """Stand-in velocity model with the VideoFlowModel call signature: an MLP predicting x0 from
    (x_s, s, cond), turned into the velocity ``v = (x_s - x0_hat) / s`` (s floored at 0.05)."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        d, c = 3 * K * R * R, 3 * R * R
        self.f = nn.Sequential(nn.Linear(d + c + 16, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                               nn.Linear(hidden, d))
        self.register_buffer("freq", torch.arange(1, 9).float() * math.pi)

    def x0(self, x: torch.Tensor, s: torch.Tensor, cond_image: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(s, dtype=x.dtype).reshape(-1, 1).expand(x.shape[0], 1)
        emb = torch.cat([torch.sin(t * self.freq), torch.cos(t * self.freq)], 1)
        return torch.tanh(self.f(torch.cat([x.flatten(1), cond_image.flatten(1), emb], 1))).view_as(x)

    def forward(self, x: torch.Tensor, s: torch.Tensor, cond_image: torch.Tensor, tokens: torch.Tensor | None = None,
                token_mask: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(s, dtype=x.dtype).reshape(-1, 1, 1, 1, 1).expand(x.shape[0], 1, 1, 1, 1)
        return (x - self.x0(x, s, cond_image)) / t.clamp(min=0.05)


def sft_toy(task: dict[str, torch.Tensor], steps: int = 400, seed: int = 0) -> ToyVelocityNet:
    """Flow-matching SFT (x0 loss) on a 50/50 mix of correct and reversed videos."""
    torch.manual_seed(seed)
    net = ToyVelocityNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = len(task["cond"])
    for _ in range(steps):
        idx = torch.randint(0, n, (32,))
        rev = (torch.rand(32) < 0.5).view(-1, 1, 1, 1, 1)
        x0 = torch.where(rev, task["reversed"][idx], task["video"][idx])
        e = torch.randn_like(x0)
        s = torch.rand(32)
        xs = (1 - s.view(-1, 1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1, 1) * e
        loss = ((net.x0(xs, s, task["cond"][idx]) - x0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


TOY_REWARD = RewardConfig(distance_scale_m=30.0)


def toy_reward_fn(videos: np.ndarray, heads: np.ndarray, mpp: np.ndarray) -> dict[str, np.ndarray]:
    """The real rewards with the real decoder (ml.decode); d0 = 30 m = 3 px at the toy scale."""
    return compute_rewards(videos, heads, mpp, TOY_REWARD)


def toy_eval_batch(task: dict[str, torch.Tensor], repeats: int = 4) -> list[dict[str, torch.Tensor]]:
    return [{"cond": task["cond"].repeat(repeats, 1, 1, 1), "true_head_px": task["true_head_px"].repeat(repeats, 1, 1),
             "mpp": task["mpp"].repeat(repeats)}]


TOY_GDPO = dict(group_size=8, conditions_per_step=4, n_steps=8, noise_scale=0.7, lr=1e-3, beta=0.04,
                clip_range=0.2, inner_epochs=2, steps=40, seed=0)


def run_toy_gdpo(net: nn.Module, task: dict[str, torch.Tensor], **overrides) -> GDPOModule:
    """``steps`` GDPO iterations on the 4 toy conditions without a Trainer (fast); returns the module."""
    cfg = GDPOConfig(**{**TOY_GDPO, **overrides})
    module = GDPOModule(net, cfg, reward_fn=toy_reward_fn)
    opt = module.configure_optimizers()
    batch = {k: task[k] for k in ("cond", "true_head_px", "mpp")}
    for _ in range(cfg.steps):
        module.gdpo_iteration(batch, opt)
    return module


@pytest.fixture(scope="module")
def toy() -> tuple[dict[str, torch.Tensor], ToyVelocityNet]:
    task = make_toy_task()
    return task, sft_toy(task)


def test_toy_truth_decodes_and_scores_perfectly(toy) -> None:
    task, _ = toy
    vids = ((task["video"].permute(0, 2, 3, 4, 1) + 1) * 127.5).round().byte().numpy()
    r = toy_reward_fn(vids, task["true_head_px"].numpy(), task["mpp"].numpy())
    # dots are drawn on whole pixels: a quarter-pixel rounding (2.5 m) is the representation floor
    assert np.all(r["distance"] > 0.9) and np.all(r["direction"] > 0.99) and np.all(r["connectivity"] == 1)


# ====================================================================== module mechanics
def test_module_iteration_mechanics(toy) -> None:
    task, net = toy
    import copy

    policy = copy.deepcopy(net)
    cfg = GDPOConfig(**{**TOY_GDPO, "steps": 1, "group_size": 2, "inner_epochs": 1, "n_steps": 3})
    module = GDPOModule(policy, cfg, reward_fn=toy_reward_fn)
    assert module.reference is not None and not any(p.requires_grad for p in module.reference.parameters())
    before = [p.detach().clone() for p in policy.parameters()]
    opt = module.configure_optimizers()
    m = module.gdpo_iteration({k: task[k] for k in ("cond", "true_head_px", "mpp")}, opt)
    for key in ("reward/distance", "reward/direction", "reward/connectivity", "kl", "clip_frac", "adv_mean",
                "adv_std", "loss", "policy_loss", "ratio_max_dev"):
        assert key in m and math.isfinite(m[key]), key
    # one inner epoch: the policy is re-scored unchanged, so the ratio is exactly 1 and KL is 0
    assert m["ratio_max_dev"] == 0.0 and m["clip_frac"] == 0.0 and m["kl"] == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    # rollouts are recorded per step and the log-probs re-computed from them match
    g = torch.Generator().manual_seed(0)
    ro = sample_rollouts(policy, task["cond"], K, 3, 0.7, g)
    assert ro.samples.shape == (4, 4, 3, K, R, R) and ro.log_probs.shape == (3, 4) and ro.videos.shape == (4, K, R, R, 3)
    # beta = 0: no reference model
    assert GDPOModule(copy.deepcopy(net), GDPOConfig(**{**TOY_GDPO, "beta": 0.0}), reward_fn=toy_reward_fn).reference is None


def test_config_validation_and_profiles() -> None:
    with pytest.raises(ValueError):
        GDPOConfig(rewards=("distance", "nope"))
    with pytest.raises(ValueError):
        GDPOConfig(n_steps=4, train_timesteps=[4])
    assert gdpo_profile("ci").steps < gdpo_profile("demo").steps < gdpo_profile("gpu").steps
    assert gdpo_profile("demo") == GDPOConfig()


# ====================================================================== evidence that it learns
def test_gdpo_raises_the_reward_on_the_toy_task(toy) -> None:
    import copy

    task, net = toy
    t0 = time.perf_counter()
    policy = copy.deepcopy(net)
    evb = toy_eval_batch(task, repeats=8)
    before_sde = evaluate_policy(policy, evb, 8, toy_reward_fn, noise_scale=0.7, seed=1)
    before_ode = evaluate_policy(policy, evb, 8, toy_reward_fn, seed=1)
    module = run_toy_gdpo(policy, task)
    after_sde = evaluate_policy(policy, evb, 8, toy_reward_fn, noise_scale=0.7, seed=1)
    after_ode = evaluate_policy(policy, evb, 8, toy_reward_fn, seed=1)
    total = lambda d: d["distance"] + d["direction"] + d["connectivity"]  # noqa: E731
    print(f"\nbefore SDE {before_sde}\nafter  SDE {after_sde}\nbefore ODE {before_ode}\nafter  ODE {after_ode}"
          f"\n{time.perf_counter() - t0:.1f}s")
    # the SFT start is meaningful: connected paths, direction a coin flip, variance inside groups
    first = module.history[0]
    assert before_sde["connectivity"] > 0.8 and abs(before_sde["direction"]) < 0.5
    assert first["reward_std_in_group/direction"] > 0.3
    # GDPO learns the direction and with it the distance; the total reward rises clearly
    assert after_sde["direction"] > before_sde["direction"] + 0.4
    assert after_sde["distance"] > before_sde["distance"] + 0.1
    assert total(after_sde) > total(before_sde) + 0.4
    assert total(after_ode) > total(before_ode) + 0.4
    late = np.mean([h["reward/total"] for h in module.history[-10:]])
    early = np.mean([h["reward/total"] for h in module.history[:5]])
    assert late > early + 0.3


# ====================================================================== real model, entry point, CLI
@pytest.fixture(scope="module")
def ci_setup(tmp_path_factory):
    from ml.models.backbone import build_video_model
    from ml.models.checkpoint import save_video_model
    from ml.models.config import model_preset
    from ml.models.data import make_toy_rendered_arrays

    root = tmp_path_factory.mktemp("gdpo")
    data = make_toy_rendered_arrays(root / "r32_k5", n=8, resolution=32, frames=5, seed=0, shard_size=4)
    torch.manual_seed(0)
    mcfg = model_preset("ci", frames=5)
    sft = save_video_model(root / "sft.pt", build_video_model(mcfg), mcfg)
    return data, sft, root


def test_rollouts_of_the_default_video_model_read_the_records(ci_setup) -> None:
    """The default video model (drawing layer + signaling prior) samples its layer from the window's records:
    rollouts are 2-channel layers, decoded by compositing over the condition image, and an untrained model
    (zero output over the prior) rolls out exactly the composited prior with the ODE (noise_scale 0)."""
    from ml.models.backbone import build_video_model
    from ml.models.config import model_preset
    from ml.models.data import RenderedVideoDataset
    from ml.models.gdpo import video_to_uint8
    from ml.models.layer import composite_layer, signal_prior

    data, _, _ = ci_setup
    ds = RenderedVideoDataset(data, rows=np.arange(2), with_tokens=True)
    cond = torch.stack([ds[i]["cond"] for i in range(2)])
    tok = torch.stack([ds[i]["tokens"] for i in range(2)])
    mask = torch.stack([ds[i]["token_mask"] for i in range(2)])
    torch.manual_seed(0)
    policy = build_video_model(model_preset("ci", frames=5)).eval()
    assert policy.cfg.target == "layer" and policy.cfg.uses_records
    ro = sample_rollouts(policy, cond, 5, 3, 0.0, torch.Generator().manual_seed(0), tok, mask)
    assert ro.samples.shape == (4, 2, 2, 5, 32, 32) and ro.log_probs.shape == (3, 2)
    assert ro.videos.shape == (2, 5, 32, 32, 3) and ro.videos.dtype == np.uint8
    prior_video = video_to_uint8(composite_layer(cond, signal_prior(tok, mask, 5, 32)))
    assert np.abs(ro.videos.astype(int) - prior_video.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="signal_prior"):  # the records are required
        sample_rollouts(policy, cond, 5, 3, 0.0, torch.Generator().manual_seed(0))


def test_train_gdpo_with_ci_video_model(ci_setup) -> None:
    from ml.models.checkpoint import load_video_model
    from ml.models.gdpo import train_gdpo

    data, sft, root = ci_setup
    cfg = gdpo_profile("ci", steps=2, n_eval=2)
    res = train_gdpo(data, sft, root / "out", cfg)
    assert res.checkpoint_path.is_file() and res.mlflow_run_id is None
    for k in ("before/distance", "after/direction", "final/kl", "final/reward/connectivity", "iterations"):
        assert k in res.metrics, k
    assert res.metrics["iterations"] == 2
    model, mcfg = load_video_model(res.checkpoint_path)
    assert (mcfg.resolution, mcfg.frames) == (32, 5)
    # the default model reads the records (signal prior): train_gdpo fed it the window's tokens
    assert mcfg.target == "layer" and mcfg.uses_records
    # GDPO changed the weights but kept the architecture
    base, _ = load_video_model(sft)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))


def test_cli_gdpo_with_mlflow(ci_setup, tmp_path) -> None:
    import json

    from ml.train.__main__ import main

    data, sft, _ = ci_setup
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "cli"
    rc = main(["gdpo", "--data", str(data), "--sft", str(sft), "--out", str(out), "--profile", "ci",
               "--steps", "1", "--n-eval", "0", "--beta", "0", "--advantage", "grpo", "--tracking-uri", uri,
               "--tag", "city=toy"])
    assert rc == 0
    summary = json.loads((out / "gdpo_result.json").read_text())
    assert summary["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(summary["mlflow_run_id"])
    assert run.data.tags.get("city") == "toy"
    assert any(k.startswith("gdpo/reward") for k in run.data.metrics)
    assert run.data.params["advantage"] == "grpo" and float(run.data.params["beta"]) == 0.0

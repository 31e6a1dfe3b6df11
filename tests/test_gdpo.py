"""Traj-GDPO: advantages, policy loss, rollouts, the Lightning module, the train entry/CLI, and evidence that it learns.

The learning test uses a toy task small enough for a CPU test (12 px, 5 frames, 4 fixed
conditions): each condition asks for a straight path from a marked start to an end; the "SFT"
model is trained on a 50/50 mix of the correct video and the *reversed* one, so its rollouts are
crisp, connected paths that go the right way only half the time (direction reward about 0, real
variance inside each group). GDPO with the real rewards and the real decoder (ml.decode) must
move it toward the right direction. The mechanics and the entry points run the real ci-sized Wan model.
"""

from __future__ import annotations

import copy
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage.draw import disk, line
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from ml.models.advantages import gdpo_advantages, grpo_advantages, informative_rows  # noqa: E402
from ml.train.gdpo.config import GDPOConfig, gdpo_profile  # noqa: E402
from ml.train.gdpo.module import GDPOModule  # noqa: E402
from ml.models.policy_loss import ppo_clip_loss  # noqa: E402
from ml.models.data import to_uint8_frames  # noqa: E402
from ml.models.rollout import exploration_mask, sample_rollouts  # noqa: E402
from ml.render import style  # noqa: E402
from ml.rewards import RewardConfig, compute_rewards  # noqa: E402
from ml.train.gdpo import evaluate_policy  # noqa: E402

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


def test_zero_variance_groups_get_no_advantage_and_leave_the_normalisation() -> None:
    """A group whose rewards are all equal carries no signal: advantage exactly 0, and the batch
    normalisation runs over the other groups only (before, it gave the constant group -mean/std)."""
    g = torch.tensor([0, 0, 1, 1, 2, 2])
    r = {"a": torch.tensor([0.0, 1.0, 5.0, 5.0, 2.0, 0.0]), "b": torch.tensor([1.0, 1.0, 3.0, 3.0, 0.0, 0.0])}
    keep = informative_rows(r, g)
    assert keep.tolist() == [True, True, False, False, True, True]
    for fn in (gdpo_advantages, grpo_advantages):
        a = fn(r, g)
        assert torch.all(a[2:4] == 0), fn.__name__
    a = gdpo_advantages(r, g)
    assert float(a[keep].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(a[keep].std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    # the same informative groups give the same advantages with or without a constant group beside them
    alone = gdpo_advantages({k: v[[0, 1, 4, 5]] for k, v in r.items()}, g[[0, 1, 4, 5]])
    np.testing.assert_allclose(a[keep].numpy(), alone.numpy(), atol=1e-6)


def test_ppo_clip_loss() -> None:
    adv = torch.tensor([1.0, -1.0, 2.0, 0.5])
    lp_old = torch.zeros(4)
    kl = torch.tensor([0.0, 1.0, 2.0, 3.0])
    # ratio 1: the loss is -mean(A) + beta mean(KL); nothing clipped
    out = ppo_clip_loss(lp_old.clone(), lp_old, adv, 0.2, kl, beta=0.5)
    assert float(out.loss) == pytest.approx(-adv.mean().item() + 0.5 * kl.mean().item())
    assert float(out.clip_frac) == 0.0 and float(out.ratio_max_dev) == 0.0
    # a ratio above 1 + c with a positive advantage is clipped (no gain beyond the clip)
    lp = torch.log(torch.tensor([2.0, 1.0, 1.0, 1.0]))
    out = ppo_clip_loss(lp, lp_old, adv, 0.2, torch.zeros(4), beta=0.0)
    assert float(out.policy_loss) == pytest.approx((-1.2 + 1.0 - 2.0 - 0.5) / 4)
    assert float(out.clip_frac) == pytest.approx(0.25)
    # rows outside keep do not enter the means; no kept row: loss 0
    keep = torch.tensor([True, False, False, False])
    out = ppo_clip_loss(lp_old.clone().requires_grad_(), lp_old, adv, 0.2, kl, 1.0, keep)
    assert float(out.loss.detach()) == pytest.approx(-1.0)
    none = ppo_clip_loss(lp_old.clone(), lp_old, adv, 0.2, kl, 1.0, torch.zeros(4, dtype=torch.bool))
    assert float(none.loss) == 0.0


def test_exploration_mask_covers_the_drawing_and_its_neighbourhood() -> None:
    prior = -torch.ones(1, 2, 1, 9, 9)
    mean = -torch.ones(1, 2, 1, 9, 9)
    prior[0, 1, 0, 4, 4] = 0.0  # a prior head pixel
    mean[0, 0, 0, 0, 0] = 0.5  # a drawn path pixel of the policy
    m = exploration_mask(prior, mean, 1)
    assert m[0, 1, 0, 3:6, 3:6].eq(1).all() and m[0, 1].sum() == 9
    assert m[0, 0, 0, :2, :2].eq(1).all() and m[0, 0].sum() == 4


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
    """Stand-in velocity model with the VideoFlowModel interface in pixel space: an MLP predicting x0 from
    (x_s, s, cond), turned into the velocity ``v = (x_s - x0_hat) / s`` (s floored at 0.05); the flow
    starts from the noise itself (no prior)."""

    latent = False

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        d, c = 3 * K * R * R, 3 * R * R
        self.f = nn.Sequential(nn.Linear(d + c + 16, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                               nn.Linear(hidden, d))
        self.register_buffer("freq", torch.arange(1, 9).float() * math.pi)
        self.cfg = SimpleNamespace(target="rgb")

    def x0(self, x: torch.Tensor, s: torch.Tensor, cond_image: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(s, dtype=x.dtype).reshape(-1, 1).expand(x.shape[0], 1)
        emb = torch.cat([torch.sin(t * self.freq), torch.cos(t * self.freq)], 1)
        return torch.tanh(self.f(torch.cat([x.flatten(1), cond_image.flatten(1), emb], 1))).view_as(x)

    def latent_shape(self, frames: int | None = None, resolution: int | None = None) -> tuple[int, int, int, int]:
        return (3, frames or K, resolution or R, resolution or R)

    def encode_condition(self, cond_image: torch.Tensor, tokens=None, token_mask=None, frames=None) -> torch.Tensor:
        return cond_image.unsqueeze(2)

    def source_sample(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def prior_model_space(self, cond: torch.Tensor) -> torch.Tensor:
        return -torch.ones_like(cond)

    def decode_video(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return x.clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor, s: torch.Tensor, cond_image: torch.Tensor, tokens: torch.Tensor | None = None,
                token_mask: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
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


# the toy samples from noise with 8 SDE steps on every pixel (its SFT model is bimodal: the noise picks the mode)
TOY_GDPO = dict(group_size=8, conditions_per_step=4, n_steps=8, init_noise_scale=1.0, noise_scale=0.7,
                exploration_radius_px=None, lr=1e-3, beta=0.04, clip_range=0.2, inner_epochs=2, steps=40, seed=0)


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


# ====================================================================== config
def test_config_validation_and_profiles() -> None:
    with pytest.raises(ValueError):
        GDPOConfig(rewards=("distance", "nope"))
    with pytest.raises(ValueError):
        GDPOConfig(n_steps=4, train_timesteps=[4])
    assert gdpo_profile("ci").steps < gdpo_profile("demo").steps < gdpo_profile("gpu").steps
    assert gdpo_profile("demo") == GDPOConfig()
    # profiles change sizes, never the method: every switch is shared
    switches = ("n_steps", "init_noise_scale", "noise_scale", "exploration_radius_px", "inner_epochs", "beta",
                "advantage", "rewards", "select_checkpoint", "clip_range")
    for name in ("ci", "gpu"):
        p = gdpo_profile(name)
        assert {k: getattr(p, k) for k in switches} == {k: getattr(GDPOConfig(), k) for k in switches}, name


def _trained_looking_ci_model():
    """The ci Wan model with random output weights (an untrained one outputs exactly the prior)."""
    from ml.models.backbone import build_video_model
    from ml.models.config import model_preset

    torch.manual_seed(0)
    model = build_video_model(model_preset("ci", frames=5)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model


def test_rollout_sampler_is_the_evaluation_sampler(ci_setup) -> None:
    """GDPO's rollouts with noise_scale 0 are exactly ml.models.sampling.generate: the policy that GDPO
    improves is the one that is evaluated (before, rollouts used a separate 10-step sampler from noise)."""
    from ml.models.sampling import generate

    model = _trained_looking_ci_model()
    b = _ci_batch(ci_setup[0])
    cond, tok, tm = b["cond"], b["tokens"], b["token_mask"]
    for steps, init in ((1, 0.0), (3, 1.0)):
        ro = sample_rollouts(model, cond, 5, steps, 0.0, torch.Generator().manual_seed(3), tok, tm,
                             init_noise_scale=init)
        video, _ = generate(model, cond, steps, generator=torch.Generator().manual_seed(3), tokens=tok,
                            token_mask=tm, frames=5, noise_scale=init)
        assert np.abs(ro.videos.astype(int) - video.astype(int)).max() <= 1, (steps, init)
        assert ro.samples.shape[0] == steps + 1 and ro.log_probs.shape == (steps, 2)
    # with exploration (the config's a = 0.3), the one-step rollout's mean is still the evaluated drawing
    cfg = GDPOConfig()
    ro = sample_rollouts(model, cond, 5, cfg.n_steps, cfg.noise_scale, torch.Generator().manual_seed(3), tok, tm,
                         init_noise_scale=cfg.init_noise_scale, exploration_radius_px=cfg.exploration_radius_px)
    layer = ((torch.from_numpy(generate(model, cond, 1, tokens=tok, token_mask=tm, frames=5, noise_scale=0.0)[1])
              .float() / 127.5) - 1.0).movedim(-1, 1)
    assert (ro.means[0].clamp(-1, 1) - layer).abs().max() <= 1.0 / 127.5 + 1e-6  # the layer is stored as uint8
    assert not torch.equal(ro.samples[1], ro.means[0])  # and the sample explores around it


def test_shared_first_step_matches_the_per_row_computation(ci_setup) -> None:
    """From the deterministic start every rollout of a group has the same first state, so the model is called
    once per group; the rollouts equal those computed row by row (group size 1)."""
    model = _trained_looking_ci_model()
    bt = _ci_batch(ci_setup[0])
    cond, tok, tm = (bt[k].repeat_interleave(3, dim=0) for k in ("cond", "tokens", "token_mask"))
    a = sample_rollouts(model, cond, 5, 2, 0.5, torch.Generator().manual_seed(1), tok, tm, group_size=3,
                        exploration_radius_px=2)
    b = sample_rollouts(model, cond, 5, 2, 0.5, torch.Generator().manual_seed(1), tok, tm, group_size=1,
                        exploration_radius_px=2)
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.log_probs, b.log_probs, rtol=1e-5, atol=1e-5)
    # rollouts of a group differ (exploration) where the mask lets noise in, and only there
    assert not torch.equal(a.samples[1, 0], a.samples[1, 1])
    same = a.stds[0, 0] == 0
    torch.testing.assert_close(a.samples[1, 0][same], a.means[0, 0][same])
    with pytest.raises(ValueError, match="groups of 3"):
        sample_rollouts(model, cond[:4], 5, 1, 0.5, None, tok[:4], tm[:4], group_size=3)


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


def _ci_batch(data, n: int = 2) -> dict:
    from torch.utils.data import default_collate

    from ml.models.data import GDPOConditionDataset

    ds = GDPOConditionDataset(data, np.arange(n), with_tokens=True)
    return default_collate([ds[i] for i in range(n)])


def test_module_iteration_mechanics(ci_setup) -> None:
    from ml.models.checkpoint import load_video_model

    data, sft, _ = ci_setup
    batch = _ci_batch(data)
    policy, _ = load_video_model(sft)
    cfg = gdpo_profile("ci", inner_epochs=1, group_size=4)
    module = GDPOModule(policy, cfg)
    assert module.reference is not None and not any(p.requires_grad for p in module.reference.parameters())
    before = [p.detach().clone() for p in policy.parameters()]
    m = module.gdpo_iteration(batch, module.configure_optimizers())
    for key in ("reward/distance", "reward/direction", "reward/connectivity", "reward/total", "kl", "clip_frac",
                "adv_mean", "adv_std", "loss", "policy_loss", "ratio_max_dev", "zero_variance_group_frac",
                "time/rollout_s", "time/reward_s", "time/reference_s", "time/update_s"):
        assert key in m and math.isfinite(m[key]), key
    assert 0.0 <= m["zero_variance_group_frac"] <= 1.0
    assert m["updated"] == 1.0  # exploration noise makes the distance reward vary inside every group
    # one inner epoch: the policy is re-scored unchanged, so the ratio is exactly 1 and KL is 0
    assert m["ratio_max_dev"] == 0.0 and m["clip_frac"] == 0.0 and m["kl"] == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    # beta = 0: no reference model
    assert GDPOModule(copy.deepcopy(policy), gdpo_profile("ci", beta=0.0)).reference is None


def test_micro_batches_give_the_full_batch_gradient(ci_setup) -> None:
    """Splitting the update into micro-batches of whole groups (and the shared first step per group) gives the
    gradient of the whole batch; the reference means computed once serve both inner epochs."""
    from ml.models.checkpoint import load_video_model

    data, sft, _ = ci_setup
    batch = _ci_batch(data)
    grads = []
    for mb in (None, 2):
        policy, _ = load_video_model(sft)
        cfg = gdpo_profile("ci", group_size=2, inner_epochs=1, grad_clip=None, micro_batch_size=mb)
        module = GDPOModule(policy, cfg)
        opt = torch.optim.SGD(policy.parameters(), lr=0.0)
        m = module.gdpo_iteration(batch, opt)
        assert m["updated"] == 1.0
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    policy, _ = load_video_model(sft)
    module = GDPOModule(policy, gdpo_profile("ci", group_size=2, inner_epochs=2))
    m = module.gdpo_iteration(batch, module.configure_optimizers())
    assert m["kl"] > 0 and m["ratio_max_dev"] > 0  # the second epoch sees the updated policy


def test_groups_without_variance_are_not_trained_on(ci_setup) -> None:
    """A reward that is the same for every rollout gives no update at all, and the share is logged as 1."""
    from ml.models.checkpoint import load_video_model

    data, sft, _ = ci_setup
    policy, _ = load_video_model(sft)
    const = lambda v, h, mpp: {k: np.ones(len(v)) for k in ("distance", "direction", "connectivity")}  # noqa: E731
    module = GDPOModule(policy, gdpo_profile("ci", group_size=2), reward_fn=const)
    before = [p.detach().clone() for p in policy.parameters()]
    m = module.gdpo_iteration(_ci_batch(data), module.configure_optimizers())
    assert m["zero_variance_group_frac"] == 1.0 and m["updated"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


# ====================================================================== evidence that it learns
def test_gdpo_raises_the_reward_on_the_toy_task(toy) -> None:
    task, net = toy
    policy = copy.deepcopy(net)
    evb = toy_eval_batch(task, repeats=8)
    before = evaluate_policy(policy, evb, 8, toy_reward_fn, init_noise_scale=1.0, seed=1)
    module = run_toy_gdpo(policy, task)
    after = evaluate_policy(policy, evb, 8, toy_reward_fn, init_noise_scale=1.0, seed=1)
    total = lambda d: d["distance"] + d["direction"] + d["connectivity"]  # noqa: E731
    print(f"\nbefore {before}\nafter  {after}")
    # the SFT start is meaningful: connected paths, direction a coin flip, variance inside groups
    first = module.history[0]
    assert first["reward/connectivity"] > 0.8 and abs(first["reward/direction"]) < 0.5
    assert first["reward_std_in_group/direction"] > 0.3
    # GDPO learns the direction, on its own rollouts and with the deterministic sampler
    late = np.mean([h["reward/total"] for h in module.history[-10:]])
    early = np.mean([h["reward/total"] for h in module.history[:5]])
    assert late > early + 0.3
    assert np.mean([h["reward/direction"] for h in module.history[-10:]]) > first["reward/direction"] + 0.4
    assert total(after) > total(before) + 0.4


# ====================================================================== real model, entry point, CLI
def test_rollouts_of_the_default_video_model_read_the_records(ci_setup) -> None:
    """The default video model (drawing layer + signaling prior) samples its layer from the window's records:
    rollouts are 2-channel layers, decoded by compositing over the condition image, and an untrained model
    (zero output over the prior) rolls out exactly the composited prior with the ODE (noise_scale 0)."""
    from ml.models.backbone import build_video_model
    from ml.models.config import model_preset
    from ml.models.data import RenderedVideoDataset
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
    prior_video = to_uint8_frames(composite_layer(cond, signal_prior(tok, mask, 5, 32)))
    assert np.abs(ro.videos.astype(int) - prior_video.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="signal_prior"):  # the records are required
        sample_rollouts(policy, cond, 5, 3, 0.0, torch.Generator().manual_seed(0))


def test_train_gdpo_with_ci_video_model(ci_setup) -> None:
    import json

    from ml.models.checkpoint import load_video_model
    from ml.train.gdpo import train_gdpo

    data, sft, root = ci_setup
    cfg = gdpo_profile("ci", steps=2, n_eval=2, select_checkpoint="last")
    res = train_gdpo(data, sft, root / "out", cfg)
    assert res.checkpoint_path.is_file() and res.mlflow_run_id is None and res.selected == "last"
    for k in ("start/distance", "selected/direction", "final/kl", "final/reward/connectivity", "iterations",
              "final/zero_variance_group_frac", "time/rollout_s", "time/update_s", "time/reference_s"):
        assert k in res.metrics, k
    assert res.metrics["iterations"] == 2
    saved = json.loads((root / "out" / "gdpo_metrics.json").read_text())
    assert [v["iteration"] for v in saved["validations"]] == [0, 1, 2]  # the start, then every iteration (ci)
    model, mcfg = load_video_model(res.checkpoint_path)
    assert (mcfg.resolution, mcfg.frames) == (32, 5)
    # the default model reads the records (signal prior): train_gdpo fed it the window's tokens
    assert mcfg.target == "layer" and mcfg.uses_records
    # GDPO changed the weights but kept the architecture
    base, _ = load_video_model(sft)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))


def test_best_val_exports_the_best_validation_and_needs_the_margin(ci_setup, monkeypatch) -> None:
    """The best validation's weights (not the last ones) go to gdpo.pt when they beat the start by
    select_min_gain; a smaller gain ships the SFT weights, exactly (the rule itself: tests/test_train_kit.py)."""
    from ml.models.checkpoint import load_video_model
    from ml.train.gdpo import loop as gdpo_train

    data, sft, root = ci_setup
    real = gdpo_train.evaluate_policy
    for totals, min_gain, expected in (([1.0, 1.5, 1.2], 0.03, "best:1"), ([1.0, 1.02, 1.01], 0.03, "start")):
        scores, states = iter(totals), []

        def scripted(policy, *args, **kwargs):
            out = real(policy, *args, **kwargs)
            out["distance"], out["direction"], out["connectivity"] = next(scores), 0.0, 0.0
            states.append({k: v.clone() for k, v in policy.state_dict().items()})
            return out

        monkeypatch.setattr(gdpo_train, "evaluate_policy", scripted)
        res = gdpo_train.train_gdpo(data, sft, root / f"sel_{expected}", gdpo_profile("ci", steps=2, n_eval=1,
                                                                                    select_min_gain=min_gain))
        assert res.selected == expected
        model, _ = load_video_model(res.checkpoint_path)
        want = states[1] if expected == "best:1" else states[0]
        assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
        if expected == "best:1":  # and not the last weights
            assert any(not torch.equal(v, states[2][k]) for k, v in model.state_dict().items())


def test_cli_gdpo_with_mlflow(ci_setup, tmp_path) -> None:
    import json

    from ml.train.__main__ import main

    data, sft, _ = ci_setup
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "cli"
    rc = main(["gdpo", "--data", str(data), "--sft", str(sft), "--out", str(out), "--profile", "ci",
               "--steps", "1", "--n-eval", "1", "--beta", "0", "--advantage", "grpo", "--tracking-uri", uri,
               "--tag", "city=toy"])
    assert rc == 0
    summary = json.loads((out / "gdpo_result.json").read_text())
    assert summary["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(summary["mlflow_run_id"])
    assert run.data.tags.get("city") == "toy"
    assert any(k.startswith("gdpo/reward") for k in run.data.metrics)
    assert {"gdpo/zero_variance_group_frac", "gdpo/kl", "gdpo/clip_frac", "val/total"} <= set(run.data.metrics)
    assert run.data.params["advantage"] == "grpo" and float(run.data.params["beta"]) == 0.0

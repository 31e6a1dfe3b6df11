"""SFT training: data module, train_sft outputs, interrupt-and-resume from last.ckpt, CLI, MLflow."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from ml.train.sft.config import sft_profile  # noqa: E402
from ml.models.data import RenderedVideoDataModule, make_toy_rendered_arrays  # noqa: E402


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    return make_toy_rendered_arrays(tmp_path_factory.mktemp("render") / "r32_k5", n=12, resolution=32, frames=5,
                                    seed=0, shard_size=5)


def _cfg(**kw):
    base = dict(max_steps=4, batch_size=2, val_every_n_steps=2, ckpt_every_n_steps=2, n_val_samples=2,
                val_sample_steps=2, limit_val_batches=1, progress_bar=False)
    base.update(kw)
    return sft_profile("ci", **base)


def test_datamodule_reads_rendered_arrays(toy_dir):
    dm = RenderedVideoDataModule(toy_dir, batch_size=3)
    dm.setup("fit")
    assert (dm.resolution, dm.frames) == (32, 5)
    assert len(dm.rows["train"]) == 9 and len(dm.rows["val"]) == 2 and len(dm.rows["test"]) == 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (3, 3, 5, 32, 32) and batch["cond"].shape == (3, 3, 32, 32)
    assert batch["video"].dtype == torch.float32
    assert -1.0 <= float(batch["video"].min()) and float(batch["video"].max()) <= 1.0
    # a row that spans shard boundaries reads the right shard
    ds = dm._ds("train")
    assert ds[6]["video"].shape == (3, 5, 32, 32)


def test_datamodule_holds_out_val_when_absent(tmp_path):
    d = make_toy_rendered_arrays(tmp_path / "r", n=10, resolution=32, frames=5, splits=(1.0, 0.0))
    dm = RenderedVideoDataModule(d, val_fraction=0.2)
    dm.setup()
    assert len(dm.rows["val"]) == 2 and len(dm.rows["train"]) == 8


def test_train_sft_outputs_and_resume(toy_dir, tmp_path):
    from ml.models.checkpoint import load_video_model
    from ml.train.sft import train_sft

    out = tmp_path / "sft"
    r1 = train_sft(toy_dir, out, _cfg(max_steps=4))
    assert r1.global_step == 4 and r1.resumed_from_step is None
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "sft_result.json").is_file()
    assert "val/loss" in r1.metrics and "val/video_mse" in r1.metrics
    assert any(p.suffix in (".png", ".npy") for p in (out / "previews").iterdir())
    model, cfg = load_video_model(r1.checkpoint_path)
    assert (cfg.resolution, cfg.frames) == (32, 5)  # taken from the data
    # running again with a larger budget continues from last.ckpt
    r2 = train_sft(toy_dir, out, _cfg(max_steps=6))
    assert r2.resumed_from_step == 4 and r2.global_step == 6


class _Crash(RuntimeError):
    pass


def test_interrupt_and_resume(toy_dir, tmp_path):
    import lightning as L

    from ml.train.sft import train_sft

    class CrashAt(L.Callback):
        def __init__(self, step: int) -> None:
            self.step = step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step >= self.step:
                raise _Crash(f"simulated crash at step {trainer.global_step}")

    out = tmp_path / "sft"
    cfg = _cfg(max_steps=8, ckpt_every_n_steps=100, val_every_n_steps=100)
    with pytest.raises(_Crash):
        train_sft(toy_dir, out, cfg, callbacks=[CrashAt(3)])
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()  # written by the on-exception checkpoint
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3
    r = train_sft(toy_dir, out, cfg)
    assert r.resumed_from_step == 3 and r.global_step == 8
    # resume=False starts over even though last.ckpt exists
    r3 = train_sft(toy_dir, out, cfg.model_copy(update={"max_steps": 2}), resume=False)
    assert r3.resumed_from_step is None and r3.global_step == 2


def test_cli_and_mlflow(toy_dir, tmp_path, capsys):
    from ml.train.__main__ import main

    out = tmp_path / "cli"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    init = tmp_path / "init"
    from ml.models.backbone import VideoFlowModel
    from ml.models.checkpoint import save_video_model
    from ml.models.config import model_preset

    save_video_model(init / "model.pt", VideoFlowModel(model_preset("ci", frames=5)))
    rc = main(["sft", "--data", str(toy_dir), "--out", str(out), "--profile", "ci", "--max-steps", "2",
               "--batch-size", "2", "--init", str(init / "model.pt"), "--tracking-uri", uri, "--tag", "city=toy",
               "--no-progress"])
    assert rc == 0
    import json

    assert '"mlflow_run_id"' in capsys.readouterr().out
    assert (out / "model.pt").is_file()
    res = json.loads((out / "sft_result.json").read_text())
    assert res["mlflow_run_id"] and res["global_step"] == 2
    import mlflow

    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(res["mlflow_run_id"])
    assert run.data.tags.get("city") == "toy"
    assert "train/loss" in run.data.metrics
    arts = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
    assert "model/model.pt" in arts


def test_signaling_token_ablation_end_to_end(grid_net, tmp_path):
    """render_samples writes tokens shards; the ci preset trains with signaling_tokens on them."""
    import numpy as np

    from ml.models.checkpoint import load_video_model
    from ml.models.tokens import EVENT_TYPES
    from ml.render import RenderConfig
    from ml.render.dataset import render_samples
    from ml.render.synthetic import synthetic_windows, windows_to_tables
    from ml.train.sft import train_sft

    rcfg = RenderConfig(resolution=32, frames=5, zoom_sizes_m=(1500.0, 2500.0, 4000.0), shard_size=4,
                        max_token_records=24)
    ws, towers = synthetic_windows(grid_net, 10, seed=5, cfg=rcfg)
    samples, signaling, towers_df, truth = windows_to_tables(grid_net, ws, towers, splits=("train", "train", "val"))
    signaling["event"] = np.array(EVENT_TYPES, dtype=object)[np.arange(len(signaling)) % len(EVENT_TYPES)]
    data = tmp_path / "r32_k5"
    render_samples(grid_net, samples, signaling, towers_df, truth, rcfg, data, workers=1)
    assert len(list(data.glob("tokens_*.npy"))) == len(list(data.glob("cond_*.npy")))

    base = _cfg(max_steps=3, val_every_n_steps=3, ckpt_every_n_steps=3)
    # the token ablation alone (the signal prior also reads the records; off here so only the tokens do)
    # (another input layout than the ci base's, so it trains from scratch)
    cfg = base.model_copy(update={"init_checkpoint": None, "model": base.model.model_copy(update={
        "signaling_tokens": True, "max_records": 16, "signal_prior": False, "prior_residual": False})})
    dm = RenderedVideoDataModule(data, batch_size=2, with_tokens=True, max_records=16)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].shape == (2, 16, 4) and batch["token_mask"].shape == (2, 16)
    assert batch["token_mask"].any() and torch.isfinite(batch["tokens"]).all()

    r = train_sft(data, tmp_path / "sft", cfg)
    assert r.global_step == 3 and np.isfinite(r.metrics["val/loss"])
    model, mcfg = load_video_model(r.checkpoint_path)
    assert mcfg.signaling_tokens and model.token_encoder is not None
    # the trained model's prediction depends on the tokens (the context is not just the null token)
    model.eval()
    s = torch.full((2,), 0.5)
    with torch.no_grad():
        x = torch.randn_like(model.encode_video(batch["video"]))
        a = model(x, s, batch["cond"], batch["tokens"], batch["token_mask"])
        b = model(x, s, batch["cond"], None, None)
    assert not torch.allclose(a, b)


def test_best_val_selection_keeps_the_starting_weights_when_training_hurts(toy_dir, tmp_path):
    """A fine-tune that makes the model worse on val windows is not exported: with a learning rate that wrecks
    the prior-residual model (which draws the signaling prior exactly at the start), model.pt is the start."""
    from ml.models.checkpoint import load_video_model
    from ml.train.sft import train_sft

    out = tmp_path / "sft_select"
    r = train_sft(toy_dir, out, _cfg(max_steps=4, lr=5.0, warmup_steps=0, grad_clip=None, n_val_samples=2))
    assert r.metrics["select/step"] == 0.0 and r.metrics["select/score"] == r.metrics["select/start_score"]
    scores = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    (state,) = [v for k, v in scores.items() if "BestOnVal" in k]
    assert set(state["scores"]) == {0, 2, 4} and min(state["scores"][2], state["scores"][4]) > state["scores"][0]
    exported, _ = load_video_model(r.checkpoint_path)
    start = torch.load(out / "selection" / "start.pt", weights_only=False)
    for k, v in exported.state_dict().items():
        torch.testing.assert_close(v, start[k])
    # 'last' exports the wrecked weights instead
    r_last = train_sft(toy_dir, tmp_path / "sft_last", _cfg(max_steps=4, lr=5.0, warmup_steps=0, grad_clip=None,
                                                              n_val_samples=2, select_checkpoint="last"))
    last, _ = load_video_model(r_last.checkpoint_path)
    assert any(not torch.allclose(v, start[k]) for k, v in last.state_dict().items())


def test_a_changed_config_starts_a_new_run_and_keeps_the_old_checkpoints(toy_dir, tmp_path):
    """One fit, then the second run's key: the run key follows the model, the objective and the starting
    weights' content (a base retrained under the same file name is a new fine-tune), not step counts; the kit's
    resume_or_supersede (tests/test_train_kit.py) moves a superseded run aside."""
    from ml.models.config import model_preset
    from ml.train.sft.loop import _run_key
    from ml.train.sft import train_sft

    out = tmp_path / "sft_changed"
    train_sft(toy_dir, out, _cfg(max_steps=2))
    r = train_sft(toy_dir, out, _cfg(max_steps=2, model=model_preset("ci", head_blob_sigma_px=2.0)))
    assert r.resumed_from_step is None and r.global_step == 2  # a new run, not a resume
    (kept,) = out.glob("checkpoints_superseded_*")
    assert (kept / "last.ckpt").is_file()

    base = tmp_path / "base.pt"
    base.write_bytes(b"weights a")
    key = _run_key(_cfg(max_steps=2), toy_dir, base)
    assert _run_key(_cfg(max_steps=8), toy_dir, base) == key  # a larger budget resumes
    assert _run_key(_cfg(max_steps=2, head_weight=3.0), toy_dir, base) != key  # another objective
    base.write_bytes(b"weights b")  # a new base shipped under the same name
    assert _run_key(_cfg(max_steps=2), toy_dir, base) != key


def test_a_relative_base_checkpoint_resolves_from_any_working_folder(tmp_path, monkeypatch):
    """The profiles name the shipped bases relative to the repository (models/...); a Dagster step or a test
    running in another folder still finds them."""
    from ml.train.sft.loop import _resolve_init

    monkeypatch.chdir(tmp_path)
    assert _resolve_init(sft_profile("ci").init_checkpoint).is_file()
    with pytest.raises(FileNotFoundError, match="not found"):
        _resolve_init("models/no-such-base.pt")


def test_ema_is_the_exponential_average_of_the_trainable_weights_and_survives_a_checkpoint():
    from ml.train.sft.module import EMA

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[1].weight.requires_grad_(False)  # frozen: not averaged, never swapped
    ema = EMA(model, 0.5)
    with ema.applied(model):  # before the first update the model's own weights are used
        assert torch.equal(model[0].weight, model[0].weight.detach().clone())
    expected = None
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0 + step)
        w = model[0].weight.detach().clone()
        expected = w if expected is None else 0.5 * expected + 0.5 * w  # AveragedModel copies at the first update
        ema.update(model)
    raw = model[0].weight.detach().clone()
    frozen = model[1].weight.detach().clone()
    with ema.applied(model):
        torch.testing.assert_close(model[0].weight, expected)
        assert torch.equal(model[1].weight, frozen)
    assert torch.equal(model[0].weight, raw)  # swapped back
    restored = EMA(model, 0.9)
    restored.load_state_dict(ema.state_dict())
    with restored.applied(model):
        torch.testing.assert_close(model[0].weight, expected)
    with pytest.raises(ValueError, match="older format"):
        restored.load_state_dict({"decay": 0.9, "shadow": {}})


def test_learning_rate_warms_up_then_follows_the_cosine_to_zero():
    from ml.train.sft.module import SFTModule

    module = SFTModule(sft_profile("ci", lr=1e-3, warmup_steps=4, max_steps=20))
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(2.5e-4) and lrs[4] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.01 * 1e-3


def test_one_step_rows_are_trained_where_the_evaluation_samples(tmp_path) -> None:
    """``one_step_fraction``: those rows start at flow time 1 from zero noise (the evaluation's one Euler step from
    zero initial noise), so with every row one-step the loss no longer depends on the random draws."""
    import torch

    from ml.models.config import model_preset
    from ml.train.sft.config import sft_profile
    from ml.models.data import RenderedVideoDataset, make_toy_rendered_arrays
    from ml.train.sft.module import SFTModule

    root = make_toy_rendered_arrays(tmp_path / "toy", n=4, resolution=32, frames=5, seed=0)
    ds = RenderedVideoDataset(root, with_tokens=True, max_records=8)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])

    def losses(fraction: float) -> list[float]:
        cfg = sft_profile("ci", model=model_preset("ci", frames=5, max_records=8), init_checkpoint=None,
                          one_step_fraction=fraction)
        torch.manual_seed(0)
        module = SFTModule(cfg)
        seen = {}
        module.model.register_forward_hook(lambda mod, args, out: seen.update(xs=args[0].detach(), s=args[1].detach()))
        out = []
        for seed in (1, 2):
            out.append(float(module.flow_loss(batch, generator=torch.Generator().manual_seed(seed))))
        return out, seen

    (a, b), seen = losses(1.0)
    assert a == pytest.approx(b)
    assert torch.count_nonzero(seen["xs"]) == 0 and torch.all(seen["s"] == 1.0)
    _, seen = losses(0.0)  # the flow-matching rows: noised inputs at times inside (0, 1)
    assert torch.count_nonzero(seen["xs"]) > 0 and torch.all(seen["s"] < 1.0)

"""The seq2seq baseline: window arrays, the network's starting point, augmentation, learning, prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from ml.observation.context import build_sample_contexts, synthetic_signaling_tables  # noqa: E402
from ml.observation import record_positions  # noqa: E402
from ml.seq2seq import RecordsToPositions, seq2seq_profile, window_batch  # noqa: E402


@pytest.fixture(scope="module")
def contexts(grid_net):
    t = synthetic_signaling_tables(grid_net, 40, seed=5, duration_s=300.0)
    return build_sample_contexts(t["samples"], t["signaling"], t["towers"], grid_net, sample_truth=t["sample_truth"])


def test_window_batch_places_records_by_the_observation_model(contexts):
    cfg = seq2seq_profile("ci")
    b = window_batch(contexts[:3], cfg)
    assert len(b) == 3 and not b.skipped
    ctx = contexts[0]
    obs = record_positions(ctx.records["cell_id"].to_numpy(),
                           ctx.records["event"].to_numpy(), ctx.towers_xy)
    n = len(obs)
    np.testing.assert_allclose(b.records[0, :n, :2] * cfg.scale_m + b.centre[0], obs, atol=1e-2)
    assert b.record_mask[0].sum() == n and np.all(np.diff(b.records[0, :n, 2]) >= 0)
    np.testing.assert_allclose(b.to_metres(b.target)[0, : ctx.n_eval], ctx.truth_xy, atol=1e-2)
    empty = ctx.__class__(**{**ctx.__dict__, "sample_id": "empty", "records": ctx.records.iloc[:0]})
    assert window_batch([empty, ctx], cfg).skipped == {"empty": "no signaling records in the window"}


def test_untrained_network_predicts_the_prior_and_ignores_padding(contexts):
    cfg = seq2seq_profile("ci")
    b = window_batch(contexts[:2], cfg)
    model = RecordsToPositions(cfg).eval()
    args = [torch.from_numpy(a) for a in (b.records, b.record_mask, b.query_t, b.query_prior, b.query_mask)]
    with torch.no_grad():
        torch.testing.assert_close(model(*args), args[3])  # zero-initialised output layer
        torch.nn.init.normal_(model.out.weight, std=0.1)
        out = model(*args)
        padded = args[0].clone()
        padded[~args[1]] = 7.0  # garbage in the padding rows
        torch.testing.assert_close(model(padded, *args[1:]), out)


def test_rotation_turns_every_position_of_a_window_together():
    from ml.train.seq2seq.module import rotate_windows

    rec = torch.tensor([[[1.0, 0.0, 0.5, 2.0]]])
    prior, target = torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[1.0, 1.0]]])
    out = rotate_windows([rec, None, None, prior, None, target], torch.tensor([math.pi / 2]))
    torch.testing.assert_close(out[0], torch.tensor([[[0.0, 1.0, 0.5, 2.0]]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[3], torch.tensor([[[-1.0, 0.0]]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[5], torch.tensor([[[-1.0, 1.0]]]), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_seq2seq_learns_what_the_prior_misses_and_predicts_on_roads(contexts, tmp_path):
    """A learning test: the truth is moved 200 m east of every window's true path, which no prior knows;
    training must learn the offset (val error well under the prior's), and prediction snaps to roads."""
    from ml.evaluation.seq2seq import predict_seq2seq_method
    from ml.seq2seq import load_seq2seq
    from ml.train.seq2seq import train_seq2seq

    shifted = [c.__class__(**{**c.__dict__, "truth_xy": c.truth_xy + np.array([200.0, 0.0])}) for c in contexts]
    cfg = seq2seq_profile("ci", max_steps=150, val_every_n_steps=25, lr=3e-3, augment_rotation=False, patience=6,
                          dropout=0.0)
    res = train_seq2seq(shifted[:30], shifted[30:], cfg, tmp_path / "s2s")
    m = res.metrics
    assert m["val/median_m"] < 0.5 * m["val/prior_median_m"], m
    model, loaded_cfg = load_seq2seq(res.checkpoint_path)
    assert loaded_cfg == cfg
    run = predict_seq2seq_method(res.checkpoint_path, contexts[30:])
    assert not run.failures and set(run.predictions) == {c.sample_id for c in contexts[30:]}
    # snapped: every predicted position lies on a road of the grid
    xy = np.concatenate(list(run.predictions.values()))
    d = contexts[0].net.edge_candidates(xy, radius_m=5.0, max_per_point=1)
    assert len(np.unique(d.point)) == len(xy)


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    from ml.seq2seq import load_seq2seq

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable seq2seq checkpoint"):
        load_seq2seq(bad)


def test_the_next_gps_model_reads_the_prefix_as_tokens_and_scores_only_the_later_times(contexts):
    from ml.seq2seq.data import EVENT_GPS

    cfg = seq2seq_profile("ci", prefix_s=150.0)
    b = window_batch(contexts[:3], cfg)
    plain = window_batch(contexts[:3], seq2seq_profile("ci"))
    ctx = contexts[0]
    known = ctx.eval_t <= 150.0
    n_rec = int(plain.record_mask[0].sum())
    gps = b.records[0][b.records[0, :, 3] == EVENT_GPS]
    assert b.record_mask[0].sum() == n_rec + known.sum() and len(gps) == known.sum()
    np.testing.assert_allclose(gps[:, :2] * cfg.scale_m + b.centre[0], ctx.truth_xy[known], atol=1e-2)
    np.testing.assert_array_equal(b.loss_mask[0, : ctx.n_eval], ~known)
    np.testing.assert_array_equal(plain.loss_mask, plain.query_mask)
    # the known times' prior is their GPS; the later times' prior is the records' ('records', the default),
    # or that shifted to start at the last known position ('anchored'), the shift fading out ('blended')
    last = np.nonzero(known)[0][-1]
    later = np.arange(ctx.n_eval) > last
    plain_prior = plain.to_metres(plain.query_prior)[0, : ctx.n_eval]
    shift = ctx.truth_xy[last] - plain_prior[last]
    for how, expect_shift in (("records", 0.0), ("anchored", 1.0), ("blended", None)):
        pb = window_batch(contexts[:1], seq2seq_profile("ci", prefix_s=150.0, prefix_prior=how))
        prior = pb.to_metres(pb.query_prior)[0, : ctx.n_eval]
        np.testing.assert_allclose(prior[known], ctx.truth_xy[known], atol=1e-2)
        if expect_shift is not None:
            np.testing.assert_allclose(prior[later], plain_prior[later] + expect_shift * shift, atol=0.05)
        else:  # the full shift just after the prefix, none at the window's end
            assert np.linalg.norm(prior[last + 1] - plain_prior[last + 1]) <= np.linalg.norm(shift) + 0.05
            np.testing.assert_allclose(prior[-1], plain_prior[-1], atol=0.05)
    # the truth after the prefix is the target only: blanking it changes no input
    from ml.nextgps import NextGPSConfig, prefix_only

    blind = window_batch([prefix_only(c, NextGPSConfig()) for c in contexts[:3]], cfg, with_target=False)
    for a in ("records", "record_mask", "query_t", "query_prior", "loss_mask"):
        np.testing.assert_array_equal(getattr(blind, a), getattr(b, a))
    # a window with more records than max_records keeps max_records of them, and the prefix its own slots
    few = window_batch(contexts[:3], seq2seq_profile("ci", prefix_s=150.0, max_records=4))
    assert (few.record_mask & (few.records[..., 3] != EVENT_GPS)).sum(axis=1).max() == 4
    assert ((few.records[..., 3] == EVENT_GPS) & few.record_mask).sum(axis=1)[0] == known.sum()
    # a window without a finite GPS position in the prefix is left out and counted, not an error
    blank = ctx.__class__(**{**ctx.__dict__, "sample_id": "blank", "truth_xy": np.full_like(ctx.truth_xy, np.nan)})
    assert window_batch([blank, ctx], cfg).skipped == {"blank": "no finite GPS position in the first 150 s (prefix_s)"}
    model = RecordsToPositions(cfg)
    assert model.event.num_embeddings == EVENT_GPS + 1
    assert RecordsToPositions(seq2seq_profile("ci")).event.num_embeddings == EVENT_GPS  # old checkpoints load


def test_a_next_gps_checkpoint_is_not_a_reconstruction_method(contexts, tmp_path):
    from ml.evaluation.seq2seq import predict_seq2seq_method
    from ml.nextgps import NextGPSConfig, seq2seq_at_targets
    from ml.train.seq2seq import train_seq2seq

    cfg = seq2seq_profile("ci", prefix_s=150.0, max_steps=2, val_every_n_steps=1)
    res = train_seq2seq(contexts[:8], contexts[8:12], cfg, tmp_path / "s2s_prefix")
    with pytest.raises(ValueError, match="a next-GPS model"):
        predict_seq2seq_method(res.checkpoint_path, contexts[12:14])
    out = seq2seq_at_targets(res.checkpoint_path, contexts[12:14], NextGPSConfig())
    assert set(out) == {c.sample_id for c in contexts[12:14]} and all(v.shape == (3, 2) for v in out.values())
    with pytest.raises(ValueError, match="trained with a 150 s GPS prefix"):
        seq2seq_at_targets(res.checkpoint_path, contexts[12:14], NextGPSConfig(known_s=120.0))


def test_record_tokens_carry_the_observation_models_spread(contexts, grid_net):
    """Each record token reads how far to trust its position (``ObservationModel.spread_m``, model units), the
    network's output depends on it, and a checkpoint config without the feature keeps four columns' worth."""
    from ml.observation import HandmadeObservationModel, left_cells

    cfg = seq2seq_profile("ci", record_spread=True)
    b = window_batch(contexts[:2], cfg)
    ctx = contexts[0]
    cells = ctx.records["cell_id"].to_numpy()
    want = HandmadeObservationModel(ctx.towers_xy).spread_m(cells, left_cells(cells, ctx.records["event"].to_numpy()))
    n = len(cells)
    np.testing.assert_allclose(b.records[0, :n, 4] * cfg.scale_m, want, rtol=1e-5)
    model = RecordsToPositions(cfg).eval()
    torch.nn.init.normal_(model.out.weight, std=0.1)
    args = [torch.from_numpy(a) for a in (b.records, b.record_mask, b.query_t, b.query_prior, b.query_mask)]
    tighter = args[0].clone()
    tighter[..., 4] *= 0.2
    with torch.no_grad():
        assert not torch.allclose(model(*args), model(tighter, *args[1:]))
    blind = RecordsToPositions(seq2seq_profile("ci", record_spread=False))
    assert blind.record_in[0].in_features == model.record_in[0].in_features - 1

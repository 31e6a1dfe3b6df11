"""Cross-city transfer: the matrix's rows, its files, and that a target is never a source."""

from __future__ import annotations

import json

import pytest
import torch

torch.set_num_threads(1)

from ml.observation.context import build_sample_contexts, synthetic_signaling_tables  # noqa: E402
from ml.evaluation.transfer import CityWindows, transfer_matrix  # noqa: E402
from ml.seq2seq import seq2seq_profile  # noqa: E402


def _city(name, net, seed):
    t = synthetic_signaling_tables(net, 12, seed=seed, duration_s=300.0)
    ctxs = build_sample_contexts(t["samples"], t["signaling"], t["towers"], net, sample_truth=t["sample_truth"])
    return CityWindows(name, {"train": ctxs[:6], "val": ctxs[6:9], "test": ctxs[9:]})


@pytest.fixture(scope="module")
def cities(grid_net, radial_net):
    return {"grid_a": _city("grid_a", grid_net, 1), "grid_b": _city("grid_b", grid_net, 2),
            "radial": _city("radial", radial_net, 3)}


@pytest.mark.slow
def test_transfer_matrix_rows_and_report(cities, tmp_path):
    cfg = seq2seq_profile("ci", max_steps=6, val_every_n_steps=3)
    df = transfer_matrix(cities, [["grid_a"], ["grid_a", "grid_b"]], ["radial"], tmp_path, cfg, finetune_steps=4)
    assert set(df["method"]) == {"seq2seq", "industrial_hmm"}
    seq = df[df["method"] == "seq2seq"]
    assert len(seq) == 4 and set(seq["source_set"]) == {"grid_a", "grid_a+grid_b"}
    assert seq["regime"].str.startswith("zero-shot").sum() == 2 and seq["regime"].str.startswith("fine-tuned").sum() == 2
    assert (df["n"] == 3).all() and df["median_error_m"].between(0, 5000).all() and df["decoded_share"].between(0, 1).all()
    saved = json.loads((tmp_path / "transfer.json").read_text())
    assert len(saved["rows"]) == len(df) and saved["settings"]["targets"] == ["radial"]
    table = [ln for ln in (tmp_path / "transfer.md").read_text().splitlines() if ln.startswith("|")]
    assert table[0] == "| method | sources | regime | radial |" and len(table) == 2 + len(df)
    assert all(ln.count("|") == table[0].count("|") for ln in table), table
    assert "| seq2seq | grid_a+grid_b | zero-shot |" in "\n".join(table)
    assert (tmp_path / "transfer.png").stat().st_size > 1000


def test_a_target_that_is_also_a_source_is_refused(cities, tmp_path):
    with pytest.raises(ValueError, match="must be unseen"):
        transfer_matrix(cities, [["grid_a", "radial"]], ["radial"], tmp_path, seq2seq_profile("ci"), finetune_steps=1)

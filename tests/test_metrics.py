"""Tests of ml.metrics with hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.metrics import (
    REPORT_KEYS,
    aggregate,
    dtw_m,
    error_stats,
    evaluate_sample,
    fill_missing,
    frechet_m,
    point_errors_m,
    road_adherence,
    route_overlap,
)

CRS = "EPSG:32632"
X0, Y0 = 649000.0, 5318000.0


def test_point_errors_haversine_matches_projected_distance():
    true = np.array([[X0, Y0], [X0, Y0]])
    pred = np.array([[X0 + 100.0, Y0], [X0, Y0 + 300.0]])
    e = point_errors_m(pred, true, CRS)
    # haversine (sphere) vs UTM (ellipsoid, scale ~0.9996): agree within 0.5 %
    np.testing.assert_allclose(e, [100.0, 300.0], rtol=5e-3)


def test_error_stats_hand_case():
    s = error_stats(np.array([3.0, 4.0, np.nan]))
    assert s["mean_error_m"] == pytest.approx(3.5)
    assert s["median_error_m"] == pytest.approx(3.5)
    assert s["rmse_m"] == pytest.approx(np.sqrt(12.5))
    assert s["p90_error_m"] == pytest.approx(3.9)


def test_route_overlap_hand_case():
    true = np.array([[0.0, 0.0], [1000.0, 0.0]])
    pred = np.array([[0.0, 0.0], [500.0, 0.0], [500.0, 500.0]])
    r = route_overlap(pred, true, tol_m=25.0)
    # pred within 25 m of the truth: 500 m + the first 25 m of the vertical leg = 525 m
    # truth covered by the prediction's buffer: x in [0, 525] = 525 m
    assert r["route_precision"] == pytest.approx(0.525, abs=1e-6)
    assert r["route_recall"] == pytest.approx(0.525, abs=1e-6)
    assert r["route_f1"] == pytest.approx(0.525, abs=1e-6)
    assert r["tme_pct"] == pytest.approx((475.0 + 475.0) / 1000.0 * 100.0, abs=1e-4)


def test_route_overlap_identical_and_stationary():
    true = np.array([[0.0, 0.0], [300.0, 0.0], [300.0, 200.0]])
    r = route_overlap(true + [0.0, 10.0], true, tol_m=25.0)  # parallel within tolerance
    assert r["tme_pct"] == pytest.approx(0.0, abs=1e-9) and r["route_f1"] == pytest.approx(1.0)
    still = route_overlap(np.array([[5.0, 5.0], [5.0, 5.0]]), true)
    assert still["route_precision"] == 1.0 and still["route_recall"] < 0.2
    assert np.isnan(route_overlap(true, np.array([[0.0, 0.0], [0.0, 0.0]]))["tme_pct"])


def test_dtw_and_frechet_hand_case():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert dtw_m(a, b) == pytest.approx(1.0)
    assert frechet_m(a, b) == pytest.approx(1.0)
    assert dtw_m(a, a) == 0.0 and frechet_m(a, a) == 0.0


def _naive(a, b, frechet):
    n, m = len(a), len(b)
    D = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            c = float(np.hypot(*(a[i] - b[j])))
            if i == 0 and j == 0:
                D[i, j] = c
                continue
            prev = min(D[i - 1, j] if i else np.inf, D[i, j - 1] if j else np.inf,
                       D[i - 1, j - 1] if i and j else np.inf)
            D[i, j] = max(c, prev) if frechet else c + prev
    return D[-1, -1]


@pytest.mark.parametrize("n,m", [(1, 1), (1, 5), (7, 3), (12, 12), (20, 9)])
def test_dp_matches_naive_double_loop(n, m):
    rng = np.random.default_rng(n * 100 + m)
    a, b = rng.normal(size=(n, 2)) * 50, rng.normal(size=(m, 2)) * 50
    assert dtw_m(a, b) == pytest.approx(_naive(a, b, False))
    assert frechet_m(a, b) == pytest.approx(_naive(a, b, True))


def test_fill_missing_holds_nearest_in_time():
    xy = np.array([[np.nan, np.nan], [1.0, 1.0], [np.nan, np.nan], [3.0, 3.0]])
    np.testing.assert_array_equal(fill_missing(xy), [[1, 1], [1, 1], [1, 1], [3, 3]])


def test_road_adherence(grid_net):
    on = grid_net.node_xy[:3]
    off = on + 500.0 * np.array([[0.0, 1.0]]) + np.array([[10000.0, 10000.0]])
    assert road_adherence(on, grid_net) == 1.0
    assert road_adherence(np.vstack([on, off[:1]]), grid_net) == pytest.approx(0.75)


def test_evaluate_sample_and_aggregate(grid_net):
    truth = grid_net.path_polyline([int(grid_net.edge_u[0]), int(grid_net.edge_v[0])])
    truth = np.vstack([truth[0], (truth[0] + truth[-1]) / 2, truth[-1]])
    perfect = evaluate_sample(truth, truth, grid_net, grid_net.crs, latency_ms=2.0)
    assert perfect["median_error_m"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["tme_pct"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["route_f1"] == pytest.approx(1.0)
    assert perfect["road_adherence"] == 1.0 and perfect["n_points"] == 3
    shifted = evaluate_sample(truth + [0.0, 40.0], truth, grid_net, grid_net.crs, latency_ms=4.0)
    np.testing.assert_allclose(shifted["errors_m"], 40.0, rtol=5e-3)
    df = pd.DataFrame([perfect, shifted])
    agg = aggregate(df)
    assert list(agg)[: len(REPORT_KEYS)] == list(REPORT_KEYS)
    assert agg["n"] == 2
    assert agg["mean_error_m"] == pytest.approx(20.0, rel=2e-3)
    assert agg["median_error_m"] == pytest.approx(20.0, rel=2e-3)  # pooled: three 0s, three 40s
    assert agg["rmse_m"] == pytest.approx(np.sqrt(800.0), rel=2e-3)
    assert agg["latency_ms"] == pytest.approx(3.0)
    # fallback without the per-point arrays: weighted by n_points
    agg2 = aggregate(df.drop(columns=["errors_m"]))
    assert agg2["mean_error_m"] == pytest.approx(20.0, rel=2e-3)
    assert agg2["rmse_m"] == pytest.approx(np.sqrt(800.0), rel=2e-3)
    with pytest.raises(ValueError, match="must match"):
        evaluate_sample(truth[:2], truth, grid_net, grid_net.crs)
    assert aggregate(df.iloc[:0])["n"] == 0

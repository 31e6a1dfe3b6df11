"""One-off diagnostic for docs/results/hre_paper.md: why MSR barely improves on WCL in the hre_paper regime.

    python -m bench.hre_paper_msr_diag

Bayreuth test drives (seed 200), every second 600 s window, 0.2 s reports: QLE of WCL, MaR and MSR
with v_max 15 / 22.2 / 33 m/s (squared loss) and the unsquared loss, and the decorrelation time of
WCL's error (first lag, 1 s grid, where its autocorrelation drops below 0.5), base radio and with
6 dB measurement noise.
"""
from bench.common import ROOT
import numpy as np
from bench.hre_paper_data import load_city, simulate_drives, drive_windows
from ml.baselines.mr.simple import wcl, msr, mar
net = load_city("bayreuth", ROOT / "outputs" / "bench" / "hre_paper_cache")
for label, over in (("base", {}), ("noise_6db", {"measurement_noise_db": 6.0})):
    d = simulate_drives(net, 2, 2460/3600, 200, **over)
    ctxs = drive_windows(d, d.mr(0.2), 600.0)[::2]
    res = {k: [] for k in ("wcl", "mar", "msr15", "msr22", "msr33", "msr22_norm_wcl")}
    lags = []
    for c in ctxs:
        rm = lambda p: float(np.sqrt(np.mean(np.sum((p - c.truth_xy) ** 2, axis=1))))
        e = wcl(c) - c.truth_xy
        res["wcl"].append(rm(wcl(c))); res["mar"].append(rm(mar(c)))
        for v in (15, 22, 33):
            res[f"msr{v}"].append(rm(msr(c, v_max=v + (0.2 if v == 22 else 0))))
        res["msr22_norm_wcl"].append(rm(msr(c, v_max=22.2, loss="norm")))
        # autocorrelation time of the WCL error (1 s grid): first lag with corr < 0.5
        ec = e - e.mean(axis=0)
        ac = [np.sum(ec[:-k] * ec[k:]) / np.sum(ec * ec) for k in range(1, 120)]
        lags.append(next((k + 1 for k, a in enumerate(ac) if a < 0.5), 120))
    print(label, {k: round(float(np.mean(v)), 1) for k, v in res.items()}, "WCL error decorrelation (corr<0.5) s:", lags, flush=True)

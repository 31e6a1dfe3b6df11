"""Time the validation of a synthetic signaling table: ``python -m ml.validation.bench --rows 1000000``.

Builds towers and a signaling frame with contract dtypes (sorted by time, ``n_devices`` devices),
validates both (signaling with the towers foreign key) and prints the timings as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd

from ml.validation.context import ValidationContext
from ml.validation.contract import EVENTS


def synthetic_signaling(n_rows: int, n_devices: int = 5000, n_cells: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A (towers, signaling) pair that passes every rule, with ``n_rows`` signaling records."""
    rng = np.random.default_rng(seed)
    towers = pd.DataFrame({
        "cell_id": np.arange(n_cells, dtype=np.int64),
        "site_id": np.arange(n_cells, dtype=np.int64) // 3,
        "lon": rng.uniform(11.0, 11.1, n_cells),
        "lat": rng.uniform(48.0, 48.1, n_cells),
        "azimuth_deg": rng.uniform(0, 360, n_cells),
        "height_m": rng.uniform(20, 40, n_cells),
        "tx_power_dbm": np.full(n_cells, 46.0),
    })
    start = pd.Timestamp("2024-03-01", tz="UTC").value
    ts = np.sort(rng.integers(0, 86_400 * 10**9, n_rows)) + start
    signaling = pd.DataFrame({
        "device_id": pd.Series(np.char.add("dev", rng.integers(0, n_devices, n_rows).astype(str)), dtype="str"),
        "ts": pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]"),
        "cell_id": rng.integers(0, n_cells, n_rows).astype(np.int64),
        "event": pd.Series(rng.choice(np.array(EVENTS), n_rows), dtype="str"),
    })
    return towers, signaling


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print (and return) the timings."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    from ml.validation import validate_table
    from ml.validation.suites import gx_handles

    gx_handles()
    context_s = time.perf_counter() - t  # import of great_expectations + ephemeral context, once per process
    towers, signaling = synthetic_signaling(args.rows, args.devices)
    ctx = ValidationContext(11.0, 48.0, 11.1, 48.1).with_references(tower_cell_ids=towers["cell_id"])
    validate_table("towers", towers, ctx).raise_if_failed()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        report = validate_table("signaling", signaling, ctx)
        times.append(time.perf_counter() - t)
        report.raise_if_failed()
    bad = signaling.copy()
    bad.loc[bad.index[::1000], "cell_id"] = 10**9  # 0.1 % unknown cells
    t = time.perf_counter()
    bad_report = validate_table("signaling", bad, ctx)
    bad_s = time.perf_counter() - t
    out = {
        "rows": args.rows, "devices": args.devices, "n_rules": report.n_rules,
        "gx_import_and_context_s": round(context_s, 2), "validate_good_s": [round(x, 2) for x in times],
        "validate_bad_s": round(bad_s, 2), "bad_failed_rules": bad_report.to_metadata()["failed_rules"],
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

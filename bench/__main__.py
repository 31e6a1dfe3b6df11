"""Run every benchmark (``make bench``); each writes ``outputs/bench/<name>.json``.

    python -m bench            # all
    python -m bench roads hre  # some
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import ROOT

BENCHMARKS = ["roads", "simulate", "render", "render_floor", "industrial_hmm", "peers", "hre", "hre_paper", "sft_step", "sft",
              "sft_objective",
              "sampling_steps", "memory", "gdpo", "seq2seq", "seq2seq_prefix", "footprints", "video_prior",
              "decode_evidence", "video_design", "industrial_settings", "hre_tower_table"]
# base_curve needs a training run (models/train_base.sh, models/train_base_footprints.sh); continuation, the demo
# sft_checkpoint (`make demo`); footprints, video_prior, decode_evidence, video_design, industrial_settings (all
# four demo cities) and hre_tower_table the demo cities' materialised data (`make demo` and `make demo CITY=ringtown`). train_parity and predict_parity are not
# benchmarks: they compare two checkouts' outputs after a refactoring (docs/results.md, issue 28)


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    failed = []
    for name in names:
        if not (ROOT / "bench" / f"{name}.py").is_file():
            print(f"== {name}: no such benchmark", flush=True)
            failed.append(name)
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=ROOT)
        print(f"== {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f}s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

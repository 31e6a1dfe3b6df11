"""Shared benchmark helpers: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_CITIES = Path(os.environ.get("SIG2GPS_SHARED_CITIES", ROOT.parent / "shared" / "cities"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What a result was measured on: CPU, cores, load when measured, library versions, GPU if any."""
    import numpy as np

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "numpy": np.__version__,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def write_result(name: str, result: dict) -> Path:
    out = ROOT / "outputs" / "bench" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {**result, "machine": machine()}
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return out

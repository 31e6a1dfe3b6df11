"""Shared benchmark helpers: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_CITIES = Path(os.environ.get("SIG2GPS_SHARED_CITIES", ROOT.parent / "shared" / "cities"))


def machine() -> dict:
    import numpy as np

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "numpy": np.__version__,
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

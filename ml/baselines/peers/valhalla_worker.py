"""Valhalla Meili behind a small JSON-lines protocol; standard library and ``pyvalhalla`` only.

``pyvalhalla`` publishes wheels for Python 3.12+ only while this project runs 3.11, so the
3.11 side (:mod:`ml.baselines.peers.valhalla_meili`) starts this file as a script under a Python that
has it (``SIG2GPS_VALHALLA_PYTHON``); on an interpreter that has ``pyvalhalla`` itself the same
:class:`MeiliCore` runs in-process. Nothing here imports numpy or the ``ml`` package.

Requests (one JSON object a line on stdin, one answer a line on stdout):

* ``{"op": "build", "pbf": PATH, "tile_dir": DIR}``: build routing tiles from an OSM PBF with
  ``valhalla_build_tiles`` (the wheel's own ``bin`` directory put first on PATH: the tool looks
  its siblings up there); answers ``{"ok", "build_s", "version"}``.
* ``{"op": "actor", "tile_dir": DIR, "meili": {...}, "trace_limits": {...}}``: a new ``Actor``
  whose configuration carries the Meili parameters and the trace service limits (Meili reads
  ``sigma_z``, ``beta``, ``search_radius``, ``breakage_distance`` ... from the configuration;
  the defaults, and the 100 m ``max_search_radius`` / ``max_gps_accuracy`` service limits, are
  sized for GPS, not cells); answers ``{"ok", "actor_s"}``.
* ``{"op": "trace", "request": {...}}``: ``trace_attributes``; answers ``{"ok", "result", "ms"}``
  (``ms``: the call and the parsing of its answer, measured here) or ``{"ok": false, "error"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class MeiliCore:
    """The Valhalla side: tile building, an Actor per Meili setting, trace_attributes."""

    def __init__(self) -> None:
        import valhalla

        self.valhalla = valhalla
        self.version = str(valhalla.__version__)
        self.actor = None
        self._config_file: str | None = None

    def _base_config(self, tile_dir: str) -> dict:
        cfg = self.valhalla.get_config(tile_extract="", tile_dir=tile_dir)
        cfg["mjolnir"]["logging"] = {"type": "", "color": False}
        cfg["loki"]["logging"] = {"type": "", "color": False}
        cfg["thor"]["logging"] = {"type": "", "color": False}
        cfg["odin"]["logging"] = {"type": "", "color": False}
        cfg["meili"]["logging"] = {"type": "", "color": False}
        return cfg

    def build(self, pbf: str, tile_dir: str) -> dict:
        """Build tiles for ``pbf`` into ``tile_dir`` (created)."""
        Path(tile_dir).mkdir(parents=True, exist_ok=True)
        cfg = self._base_config(tile_dir)
        bin_dir = Path(self.valhalla.__file__).parent / "bin"
        exe = bin_dir / "valhalla_build_tiles"
        if not exe.is_file():
            raise FileNotFoundError(f"valhalla_build_tiles not found in {bin_dir}")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cfg, f)
            cfg_path = f.name
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                   f"{os.environ.get('PATH', '')}")
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "-c", cfg_path, pbf], env=env, capture_output=True, text=True)
        build_s = time.perf_counter() - t0
        os.unlink(cfg_path)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout)[-2000:]
            raise RuntimeError(f"valhalla_build_tiles failed ({proc.returncode}): {tail}")
        if not any(Path(tile_dir).rglob("*.gph")):
            raise RuntimeError(f"valhalla_build_tiles wrote no tiles into {tile_dir}: {proc.stderr[-2000:]}")
        return {"build_s": build_s, "version": self.version}

    def new_actor(self, tile_dir: str, meili: dict, trace_limits: dict) -> dict:
        """Replace the Actor by one configured with these Meili parameters and trace limits."""
        cfg = self._base_config(tile_dir)
        cfg["meili"]["default"].update(meili)
        cfg["meili"]["auto"].update({k: v for k, v in meili.items() if k in cfg["meili"]["auto"]})
        cfg["service_limits"]["trace"].update(trace_limits)
        if self._config_file:
            os.unlink(self._config_file)
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="sig2gps_meili_", delete=False) as f:
            json.dump(cfg, f)
            self._config_file = f.name
        t0 = time.perf_counter()
        self.actor = self.valhalla.Actor(self._config_file)
        return {"actor_s": time.perf_counter() - t0, "version": self.version}

    def trace(self, request: dict) -> dict:
        """``trace_attributes`` on ``request``; ``ms`` covers the call and the JSON parsing."""
        if self.actor is None:
            raise RuntimeError("no Actor: send an 'actor' request first")
        body = json.dumps(request)
        t0 = time.perf_counter()
        try:
            out = json.loads(self.actor.trace_attributes(body))
            err = None
        except RuntimeError as exc:  # ValhallaError derives from RuntimeError: no match for this trace
            out, err = None, str(exc)
        ms = (time.perf_counter() - t0) * 1e3
        if err is not None:
            return {"ok": False, "error": err, "ms": ms}
        return {"ok": True, "result": out, "ms": ms}

    def handle(self, msg: dict) -> dict:
        """One protocol request -> its answer (errors are answers too)."""
        try:
            op = msg.get("op")
            if op == "build":
                return {"ok": True, **self.build(msg["pbf"], msg["tile_dir"])}
            if op == "actor":
                return {"ok": True, **self.new_actor(msg["tile_dir"], msg.get("meili", {}), msg.get("trace_limits", {}))}
            if op == "trace":
                return self.trace(msg["request"])
            if op == "version":
                return {"ok": True, "version": self.version, "python": sys.version.split()[0]}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the caller, which decides
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    """Serve requests from stdin until it closes."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]  # no shadowing of `valhalla`
    # the protocol gets a private copy of stdout; fd 1 itself (where C++ logging goes) becomes stderr
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    core = MeiliCore()
    for line in sys.stdin:
        if not line.strip():
            continue
        ans = core.handle(json.loads(line))
        out.write(json.dumps(ans) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m ml.scale generate|pair``: make an operator-sized day; pair it out of core (docs/architecture.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ml.cities import CityConfig, RoadSource


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml.scale", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="simulate an operator-sized day as partitioned Parquet")
    g.add_argument("--osm", required=True, type=Path, help="OSM extract, e.g. ../shared/cities/campo_grande.osm.gz")
    g.add_argument("--name", default=None, help="city name (default: the file's stem)")
    g.add_argument("--out", required=True, type=Path)
    g.add_argument("--devices", type=int, default=100_000)
    g.add_argument("--taxis", type=int, default=2_000)
    g.add_argument("--shard-devices", type=int, default=1_000)
    g.add_argument("--seed", type=int, default=31)
    g.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    if args.command == "generate":
        from ml.scale.operator_day import OperatorDayConfig, generate_operator_day

        if not args.osm.is_file():
            p.error(f"--osm {args.osm}: file not found")
        name = args.name or args.osm.name.split(".")[0]
        city = CityConfig(name=name, seed=args.seed, roads=RoadSource(source="osm", path=str(args.osm.resolve())))
        cfg = OperatorDayConfig(n_devices=args.devices, n_taxis=args.taxis, shard_devices=args.shard_devices,
                                seed=args.seed)
        manifest = generate_operator_day(city, args.out, cfg, workers=args.workers)
        print(json.dumps({k: v for k, v in manifest.items() if k != "config"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

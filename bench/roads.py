"""Road-network loading: nodes, edges, km of drivable road and load time per city.

    python -m bench.roads
"""

from __future__ import annotations

import time

from bench.common import ROOT, SHARED_CITIES, write_result
from ml.cities import CityConfig, RoadSource, load_city, load_road_network

EXTRACTS = ["aguascalientes.osm.bz2", "krems.osm.gz", "bayreuth.osm.gz", "campo_grande.osm.gz"]


def main() -> dict:
    rows = []
    cities = [(n, load_city(n, ROOT)) for n in ("gridville", "ringtown")]
    cities += [(f.split(".")[0], CityConfig(name=f.split(".")[0], roads=RoadSource(source="osm", path=str(SHARED_CITIES / f))))
               for f in EXTRACTS if (SHARED_CITIES / f).is_file()]
    for name, cfg in cities:
        t0 = time.perf_counter()
        net = load_road_network(cfg)  # no cache: the full parse, repair, build, simplify, project
        dt = time.perf_counter() - t0
        rows.append({"city": name, "source": cfg.roads.path.split("/")[-1] if cfg.roads.path else f"synthetic {cfg.roads.kind}",
                     "nodes": net.n_nodes, "edges": net.n_edges, "km": round(net.stats["km_total"], 1),
                     "dropped_refs": net.stats["dropped_refs"], "load_s": round(dt, 2)})
        print(rows[-1], flush=True)
    write_result("roads", {"rows": rows})
    print("\n| city | source | nodes | edges | km drivable | dangling refs dropped | load s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['city']} | {r['source']} | {r['nodes']} | {r['edges']} | {r['km']} | {r['dropped_refs']} | {r['load_s']} |")
    return {"rows": rows}


if __name__ == "__main__":
    main()

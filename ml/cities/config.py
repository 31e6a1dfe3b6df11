"""The city registry: one TOML file per city under ``cities/``, validated by a typed model."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CITY_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
OSM_SUFFIXES = (".osm", ".osm.gz", ".osm.bz2", ".osm.pbf", ".pbf")


class CityConfigError(ValueError):
    """A city file is missing or breaks a rule; the message names the file, the field and the rule."""


class RoadSource(BaseModel):
    """Where the road network comes from."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["osm", "place", "bbox", "synthetic"]
    path: str | None = Field(None, description="OSM file (.osm, .osm.gz, .osm.bz2, .osm.pbf), relative to the repository root")
    place: str | None = Field(None, description="place name for osmnx geocoding (online only)")
    bbox: tuple[float, float, float, float] | None = Field(None, description="west, south, east, north in degrees (online only)")
    kind: Literal["grid", "radial", "organic"] | None = Field(None, description="synthetic morphology")
    size_km: float = Field(4.0, gt=0.2, le=50.0, description="synthetic city side length")
    center_lon: float = Field(11.0, ge=-180, le=180)
    center_lat: float = Field(48.0, ge=-80, le=84)

    @model_validator(mode="after")
    def _check_source_fields(self) -> "RoadSource":
        need = {"osm": "path", "place": "place", "bbox": "bbox", "synthetic": "kind"}[self.source]
        if getattr(self, need) in (None, ""):
            raise ValueError(f"roads.source = '{self.source}' requires roads.{need}")
        if self.source == "osm" and not str(self.path).lower().endswith(OSM_SUFFIXES):
            raise ValueError(f"roads.path must end with one of {', '.join(OSM_SUFFIXES)}, got '{self.path}'")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (w < e and s < n):
                raise ValueError("roads.bbox must be (west, south, east, north) with west < east and south < north")
        return self


class ImportedTables(BaseModel):
    """Paths (CSV or Parquet, relative to the repository root) of tables imported instead of simulated."""

    model_config = ConfigDict(extra="forbid")

    towers: str
    gps: str
    signaling: str
    mr: str | None = None
    truth_links: str | None = Field(None, description="optional device->vehicle truth, only for pairing evaluation")


class CityConfig(BaseModel):
    """A registered city. Stage sections hold overrides of that stage's typed config."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    seed: int = 0
    roads: RoadSource
    data_source: Literal["simulate", "import"] = "simulate"
    imported: ImportedTables | None = None
    simulation: dict[str, Any] = Field(default_factory=dict)
    pairing: dict[str, Any] = Field(default_factory=dict)
    render: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "CityConfig":
        if not CITY_NAME_RE.match(self.name):
            raise ValueError(f"name '{self.name}' must match {CITY_NAME_RE.pattern} (lower case, digits, underscores)")
        if self.data_source == "import" and self.imported is None:
            raise ValueError("data_source = 'import' requires an [imported] section with towers, gps, signaling")
        return self


#: Sections of a city file checked key by key (unknown keys are errors): section name -> its model.
_SECTION_MODELS: dict[str, type[BaseModel]] = {"roads": RoadSource, "imported": ImportedTables}


def project_root() -> Path:
    """The repository root: the folder holding ``cities/`` (``SIG2GPS_ROOT`` overrides)."""
    import os

    env = os.environ.get("SIG2GPS_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for cand in (here, *here.parents):
        if (cand / "cities").is_dir() and (cand / "pyproject.toml").is_file():
            return cand
    return Path(__file__).resolve().parents[2]


def cities_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "cities"


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys allowed beside the unknown key at ``loc`` (top level, or in [roads] / [imported])."""
    model = _SECTION_MODELS.get(str(loc[0]), CityConfig) if len(loc) > 1 else CityConfig
    return list(model.model_fields)


def _format_validation_error(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid city file"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(file)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  field '{field}': unknown key (rule: only these keys are allowed here: "
                         f"{', '.join(_allowed_keys(tuple(e['loc'])))})")
        else:
            lines.append(f"  field '{field}': {e['msg']}")
    return "\n".join(lines)


def display_path(p: Path, root: Path | None = None) -> str:
    """``p`` as a person would write it: relative to the repository root when inside it, else as is."""
    try:
        return str(Path(p).resolve().relative_to((root or project_root()).resolve()))
    except ValueError:
        return str(p)


def load_city(name_or_path: str | Path, root: Path | None = None) -> CityConfig:
    """Load and validate ``cities/<name>.toml`` (or a path to a TOML file).

    Errors name the file as the user gave it (a path as given; a city name as ``cities/<name>.toml``),
    the field and the rule.
    """
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = cities_dir(root) / f"{name_or_path}.toml"
        shown = display_path(p, root)
    else:
        shown = str(name_or_path)
    if not p.is_file():
        known = ", ".join(list_cities(root)) or "none"
        raise CityConfigError(f"{shown}: no such city file (registered cities: {known})")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CityConfigError(f"{shown}: not valid TOML: {exc}") from exc
    try:
        cfg = CityConfig.model_validate(raw)
    except ValidationError as exc:
        raise CityConfigError(_format_validation_error(shown, exc)) from None
    if cfg.name != p.stem:
        raise CityConfigError(f"{shown}: field 'name' is '{cfg.name}' but must equal the file name '{p.stem}'")
    return cfg


def list_cities(root: Path | None = None) -> list[str]:
    d = cities_dir(root)
    return sorted(f.stem for f in d.glob("*.toml")) if d.is_dir() else []


def resolve_path(path: str, root: Path | None = None) -> Path:
    """Resolve a path from a city file: absolute as is, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else (root or project_root()) / p


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def dump_city_toml(cfg: CityConfig) -> str:
    """Serialise a city config to TOML (only the fields that are set)."""
    data = cfg.model_dump(exclude_none=True, exclude_defaults=False)
    out: list[str] = []
    tables: dict[str, dict] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            if v:
                tables[k] = v
        else:
            out.append(f"{k} = {_toml_value(v)}")
    for k, tbl in tables.items():
        out.append(f"\n[{k}]")
        for kk, vv in tbl.items():
            out.append(f"{kk} = {_toml_value(vv)}")
    return "\n".join(out) + "\n"


def write_city(cfg: CityConfig, root: Path | None = None, overwrite: bool = False) -> Path:
    d = cities_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{cfg.name}.toml"
    if p.exists() and not overwrite:
        raise CityConfigError(f"{p}: city '{cfg.name}' already exists (pass overwrite to replace it)")
    p.write_text(dump_city_toml(cfg), encoding="utf-8")
    load_city(p, root)  # round-trip check
    return p

"""Typed pipeline configuration and the ``ci`` / ``demo`` / ``gpu`` profiles.

Each stage owns a pydantic config whose defaults are the ``demo`` profile. A profile is a set of
*size* overrides per stage (fleet size, resolution, steps, model width); it never switches code
paths. A city file may override stage fields too (its ``[simulation]``, ``[pairing]`` and
``[render]`` sections); the order is stage defaults < profile < city.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel

from ml.cities.config import CityConfig

Profile = Literal["ci", "demo", "gpu"]
PROFILES: tuple[str, ...] = ("ci", "demo", "gpu")

# stage name -> "module:Class" of its config (imported lazily so stages stay independent)
STAGE_CONFIGS: dict[str, str] = {
    "simulation": "ml.simulate.config:SimulationConfig",
    "pairing": "ml.pairing.config:PairingConfig",
    "samples": "ml.pairing.config:SampleConfig",
    "render": "ml.render.config:RenderConfig",
    "model": "ml.models.config:ModelConfig",
    "sft": "ml.train.sft.config:SFTConfig",
    "gdpo": "ml.train.gdpo.config:GDPOConfig",
    "seq2seq": "ml.seq2seq.config:Seq2SeqConfig",
    "evaluation": "ml.evaluation:EvaluationConfig",
    "operator": "ml.scale.operator_day:OperatorDayConfig",
    "out_of_core": "ml.scale.pairing:OutOfCoreConfig",
    "batch": "ml.batch.reconstruct:BatchConfig",
    "next_gps": "ml.nextgps.config:NextGPSConfig",
    "footprints": "ml.observation.config:FootprintConfig",
}

# Stages whose package defines its own profile table (a ``<stage>_profile(name, **overrides)``
# function next to the config): the model and training sizes live beside the model code.
STAGE_PROFILE_FACTORIES: dict[str, str] = {
    "sft": "ml.train.sft.config:sft_profile",
    "gdpo": "ml.train.gdpo.config:gdpo_profile",
    "seq2seq": "ml.seq2seq.config:seq2seq_profile",
}

# Size overrides only, for the other stages. Keys must be fields of the stage's config.
PROFILE_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    # seconds-sized: a few taxis for a few hours, 32 px videos, a handful of evaluation windows
    "ci": {
        "simulation": dict(n_taxis=6, n_decoys=6, n_days=1, shift_hours=(2.5, 3.0), shift_start_hour=(6.0, 7.0),
                           decoy_active_hours=(3.0, 4.0), decoy_start_hour=(5.0, 6.0), driver_extra_hours=(0.1, 0.3)),
        "pairing": dict(min_overlap_h=1.5, min_moving_h=0.3, min_records=15),
        "operator": dict(n_devices=36, n_taxis=6, shard_devices=12),
        "out_of_core": dict(memory_limit_mb=512, records_per_bucket=500, threads=1),
        "render": dict(resolution=32, frames=9, shard_size=64, workers=1, n_previews=2),
        "evaluation": dict(max_samples=4, video_batch_size=4, robustness_seeds=1,
                           robustness_max_samples=2, robustness_drop_fracs=(0.0, 0.5), case_studies=1),
        "next_gps": dict(max_samples=4, val_max_samples=4, video_steps_choices=(1, 2), video_batch_size=4),
    },
    # sizes for `make demo` on 2 CPU cores (13 min 26 s measured, both seq2seq trainings 8 of it: docs/results.md)
    "demo": {
        "evaluation": dict(max_samples=100),
        # an operator-sized day in the Dagster UI would take an hour on 2 cores: the demo day is 2,000 phones
        "operator": dict(n_devices=2_000, n_taxis=40),
    },
    # one H100-class GPU: more data, 128 px and 33 frames (round-trip floor 6-7 m on real samples)
    "gpu": {
        "simulation": dict(n_taxis=80, n_decoys=160, n_days=3),
        "render": dict(resolution=128, frames=33),
        "evaluation": dict(video_batch_size=32, robustness_seeds=3, robustness_max_samples=30),
        "next_gps": dict(max_samples=None, val_max_samples=100, video_steps_choices=(1, 2, 4, 8), video_batch_size=32),
    },
}

# Which city-file section overrides which stage.
CITY_SECTIONS = {"simulation": "simulation", "pairing": "pairing", "render": "render"}


def stage_config_class(stage: str) -> type[BaseModel]:
    if stage not in STAGE_CONFIGS:
        raise KeyError(f"unknown stage '{stage}' (known: {', '.join(STAGE_CONFIGS)})")
    module, cls = STAGE_CONFIGS[stage].split(":")
    return getattr(importlib.import_module(module), cls)


def stage_config(stage: str, profile: str = "demo", city: CityConfig | None = None, **overrides: Any) -> BaseModel:
    """The typed config of one stage for a profile and city: defaults < profile < city < explicit overrides."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile '{profile}' (choose one of {', '.join(PROFILES)})")
    cls = stage_config_class(stage)
    if stage in STAGE_PROFILE_FACTORIES:
        module, fn = STAGE_PROFILE_FACTORIES[stage].split(":")
        return getattr(importlib.import_module(module), fn)(profile, **overrides)
    values: dict[str, Any] = dict(PROFILE_OVERRIDES[profile].get(stage, {}))
    if city is not None and stage in CITY_SECTIONS:
        values.update(getattr(city, CITY_SECTIONS[stage]) or {})
    values.update(overrides)
    if stage == "simulation" and "scenario" in values:
        # a named radio network (SimulationConfig.for_scenario: 'layered', 'regular', 'hre_paper') under the
        # city's and the caller's own settings
        from ml.simulate.config import SCENARIOS

        name = values.pop("scenario")
        if name not in SCENARIOS:
            where = f"cities/{city.name}.toml [simulation] scenario" if city else "simulation scenario"
            raise ValueError(f"{where}: unknown scenario {name!r} (known: {sorted(SCENARIOS)})")
        values = {**SCENARIOS[name], **values}
    unknown = set(values) - set(cls.model_fields)
    if unknown:
        where = f"cities/{city.name}.toml [{CITY_SECTIONS.get(stage, stage)}]" if city else f"profile '{profile}'"
        raise ValueError(f"{where}: unknown {stage} field(s) {sorted(unknown)}; known: {sorted(cls.model_fields)}")
    return cls.model_validate(values)

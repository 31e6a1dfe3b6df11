"""``transfer_report``: the cross-city transfer matrix (``sig2gps transfer``) as an asset.

It spans cities, so it is not partitioned by city, and it declares no dependency on the per-city
assets: Dagster cannot express "the ``samples`` partitions of these configured cities" for a matrix
whose cities are run configuration. Instead it checks its inputs itself before any work
(``ml.evaluation.transfer.missing_inputs``) and fails with a ``dg.Failure`` naming each missing city and
table. The defaults are the README's command::

    sig2gps transfer --train gridville --train gridville,ringtown --test krems,aguascalientes,bayreuth
"""

# no `from __future__ import annotations`: Dagster reads the config class from the live annotation
import hashlib

import dagster as dg
from pydantic import Field

from dagster_project.code_versions import code_version
from dagster_project.resources import MLflowResource, PathsResource


class TransferConfig(dg.Config):
    """What the matrix holds: source sets, targets, profile and budgets (run configuration)."""

    source_sets: list[str] = Field(default=["gridville", "gridville,ringtown"],
                                   description="source sets, each a comma-separated list of cities")
    targets: list[str] = Field(default=["krems", "aguascalientes", "bayreuth"],
                               description="target cities, unseen by every source set")
    profile: str = Field(default="demo", description="the profile the cities were materialised with")
    finetune_steps: int = Field(default=100, ge=1, description="seq2seq fine-tune budget on each target (steps)")
    max_test: int = Field(default=100, ge=1, description="test windows per target (the first ones)")
    methods: list[str] = Field(default=["industrial_hmm", "seq2seq", "video"],
                               description="among industrial_hmm, seq2seq, video (video needs rendered_videos)")
    video_base_steps: int = Field(default=100, ge=1, description="video base budget from random weights (steps)")
    video_finetune_steps: int = Field(default=10, ge=1, description="video fine-tune budget per target (steps)")


def _code_version() -> str:
    # the matrix runs the evaluation's prediction code, the trainers and the rendered-array concatenation:
    # it is stale when any of the three changes
    parts = "".join(code_version(k) for k in ("predictions", "training", "rendered_videos"))
    return hashlib.sha256(parts.encode()).hexdigest()[:12]


@dg.asset(group_name="evaluation", kinds={"pytorch", "mlflow", "pandas"}, code_version=_code_version())
def transfer_report(context: dg.AssetExecutionContext, config: TransferConfig, paths: PathsResource,
                    mlflow: MLflowResource) -> dg.MaterializeResult:
    """Models trained on source cities scored on unseen target cities: ``outputs/transfer/<profile>/``
    (``transfer.json``, ``.md``, ``.png``, written at once) and one run in MLflow (``sig2gps-transfer``)."""
    from ml.evaluation.transfer import METHODS, log_transfer_to_mlflow, missing_inputs, run_transfer

    from dagster_project.metadata import mlflow_link

    root = paths.root_path
    source_sets = [[c for c in s.split(",") if c] for s in config.source_sets]
    if not source_sets or not all(source_sets) or not config.targets:
        raise dg.Failure(f"transfer_report: needs source sets and targets (got {config.source_sets} -> "
                         f"{config.targets})")
    unknown = sorted(set(config.methods) - set(METHODS))
    if unknown:
        raise dg.Failure(f"transfer_report: unknown methods {unknown}; choose among {', '.join(METHODS)}")
    cities = list(dict.fromkeys([*sum(source_sets, []), *config.targets]))
    missing = missing_inputs(root, cities, config.profile, video="video" in config.methods)
    if missing:
        raise dg.Failure("transfer_report: inputs not materialised:\n" + "\n".join(missing),
                         metadata={"missing": dg.MetadataValue.md("\n".join(f"- {m}" for m in missing))})
    out = root / "outputs" / "transfer" / config.profile
    df = run_transfer(root, source_sets, config.targets, config.profile, out, finetune_steps=config.finetune_steps,
                      max_test=config.max_test, methods=config.methods, video_base_steps=config.video_base_steps,
                      video_finetune_steps=config.video_finetune_steps, progress=context.log.info)
    uri = mlflow.uri(root)
    run_id = log_transfer_to_mlflow(df, out, source_sets, config.targets, config.profile, uri,
                                    tags={"dagster_run_id": context.run_id})
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(out / "transfer.md")),
        "matrix": dg.MetadataValue.md((out / "transfer.md").read_text()),
        "rows": len(df), "cities": ", ".join(cities), **mlflow_link(uri, run_id)})

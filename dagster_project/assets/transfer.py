"""``transfer_base_models`` and ``transfer_report``: the cross-city transfer matrix (``sig2gps transfer``) as
two assets, the models trained on the source sets first (their lineage), then the matrix that scores them
zero-shot and fine-tuned on the targets.

They span cities, so they are not partitioned by city, and they declare no dependency on the per-city
assets: Dagster cannot express "the ``samples`` partitions of these configured cities" for a matrix
whose cities are run configuration. Instead each checks its inputs itself before any work
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


SOURCE_SETS = ["gridville", "gridville,ringtown"]
METHODS = ["industrial_hmm", "seq2seq", "video"]


class TransferBasesConfig(dg.Config):
    """The models trained on the source sets (run configuration; the same source sets, profile and methods as
    the ``transfer_report`` that reads them)."""

    source_sets: list[str] = Field(default=SOURCE_SETS, description="source sets, each a comma-separated list of cities")
    profile: str = Field(default="demo", description="the profile the cities were materialised with")
    methods: list[str] = Field(default=METHODS, description="among industrial_hmm, seq2seq, video (the learned ones "
                               "get a base; video needs rendered_videos)")
    video_base_steps: int = Field(default=100, ge=1, description="video base budget from random weights (steps)")


class TransferConfig(dg.Config):
    """What the matrix holds: source sets, targets, profile and the targets' fine-tune budgets (run configuration)."""

    source_sets: list[str] = Field(default=SOURCE_SETS, description="source sets, each a comma-separated list of cities")
    targets: list[str] = Field(default=["krems", "aguascalientes", "bayreuth"],
                               description="target cities, unseen by every source set")
    profile: str = Field(default="demo", description="the profile the cities were materialised with")
    finetune_steps: int = Field(default=100, ge=1, description="seq2seq fine-tune budget on each target (steps)")
    max_test: int = Field(default=100, ge=1, description="test windows per target (the first ones)")
    methods: list[str] = Field(default=METHODS, description="among industrial_hmm, seq2seq, video (video needs "
                               "rendered_videos)")
    video_finetune_steps: int = Field(default=10, ge=1, description="video fine-tune budget per target (steps)")


def _source_sets(source_sets: list[str], methods: list[str]) -> list[list[str]]:
    from ml.evaluation.transfer import METHODS as KNOWN

    sets = [[c for c in s.split(",") if c] for s in source_sets]
    if not sets or not all(sets):
        raise dg.Failure(f"transfer: needs non-empty source sets (got {source_sets})")
    unknown = sorted(set(methods) - set(KNOWN))
    if unknown:
        raise dg.Failure(f"transfer: unknown methods {unknown}; choose among {', '.join(KNOWN)}")
    return sets


def _require(root, cities: list[str], profile: str, video: bool) -> None:
    from ml.evaluation.transfer import missing_inputs

    missing = missing_inputs(root, cities, profile, video=video)
    if missing:
        raise dg.Failure("transfer: inputs not materialised:\n" + "\n".join(missing),
                         metadata={"missing": dg.MetadataValue.md("\n".join(f"- {m}" for m in missing))})


def models_dir(root, profile: str):
    """Where the matrix's models live: ``outputs/transfer/models/<profile>/`` (beside the report folder)."""
    from ml.evaluation.transfer import models_dir_for

    return models_dir_for(report_dir(root, profile))


def report_dir(root, profile: str):
    return root / "outputs" / "transfer" / profile


def _code_version() -> str:
    # the matrix runs the evaluation's prediction code, the trainers and the rendered-array concatenation:
    # it is stale when any of the three changes
    parts = "".join(code_version(k) for k in ("predictions", "training", "rendered_videos"))
    return hashlib.sha256(parts.encode()).hexdigest()[:12]


@dg.asset(group_name="evaluation", kinds={"pytorch"}, code_version=_code_version())
def transfer_base_models(context: dg.AssetExecutionContext, config: TransferBasesConfig,
                         paths: PathsResource) -> dg.MaterializeResult:
    """The models each source set trains for the transfer matrix (seq2seq on the sources' windows; the video
    model from random weights on their rendered windows), in ``outputs/transfer/models/<profile>/`` with the
    manifest ``bases.json``. Nothing of a target is read."""
    from ml.evaluation.transfer import run_transfer_bases

    root = paths.root_path
    source_sets = _source_sets(config.source_sets, config.methods)
    _require(root, list(dict.fromkeys(sum(source_sets, []))), config.profile, video="video" in config.methods)
    out = models_dir(root, config.profile)
    bases = run_transfer_bases(root, source_sets, config.profile, out, methods=config.methods,
                               video_base_steps=config.video_base_steps, progress=context.log.info)
    rows = [{"source_set": n, "seq2seq": str(b.seq2seq or "-"), "video": str(b.video or "-"),
             **{f"{m}.{k}": v for m, d in b.info.items() for k, v in d.items() if k in ("best_step", "global_step",
                                                                                     "selected")}}
            for n, b in bases.items()]
    return dg.MaterializeResult(metadata={"models": dg.MetadataValue.path(str(out / "bases.json")),
                                          "bases": dg.MetadataValue.md(_markdown_table(rows)),
                                          "source_sets": len(bases)})


def _markdown_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


@dg.asset(group_name="evaluation", kinds={"pytorch", "mlflow", "pandas"}, code_version=_code_version(),
          deps=["transfer_base_models"])
def transfer_report(context: dg.AssetExecutionContext, config: TransferConfig, paths: PathsResource,
                    mlflow: MLflowResource) -> dg.MaterializeResult:
    """The source sets' models (``transfer_base_models``) scored on unseen target cities, zero-shot and after a
    fine-tune on each target: ``outputs/transfer/<profile>/`` (``transfer.json``, ``.md``, ``.png``, written at
    once) and one run in MLflow (``sig2gps-transfer``)."""
    from ml.evaluation.transfer import load_transfer_bases, log_transfer_to_mlflow, run_transfer

    from dagster_project.metadata import mlflow_link

    root = paths.root_path
    source_sets = _source_sets(config.source_sets, config.methods)
    if not config.targets:
        raise dg.Failure(f"transfer_report: needs target cities (got {config.targets})")
    cities = list(dict.fromkeys([*sum(source_sets, []), *config.targets]))
    _require(root, cities, config.profile, video="video" in config.methods)
    try:
        bases = load_transfer_bases(models_dir(root, config.profile))
    except FileNotFoundError as exc:
        raise dg.Failure(f"transfer_report: {exc}") from exc
    out = report_dir(root, config.profile)
    try:
        df = run_transfer(root, source_sets, config.targets, config.profile, out,
                          finetune_steps=config.finetune_steps, max_test=config.max_test, methods=config.methods,
                          video_finetune_steps=config.video_finetune_steps, bases=bases,
                          models_dir=models_dir(root, config.profile), progress=context.log.info)
    except ValueError as exc:  # e.g. a source set without its base: materialise transfer_base_models for it
        raise dg.Failure(f"transfer_report: {exc}") from exc
    uri = mlflow.uri(root)
    run_id = log_transfer_to_mlflow(df, out, source_sets, config.targets, config.profile, uri,
                                    tags={"dagster_run_id": context.run_id})
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(out / "transfer.md")),
        "matrix": dg.MetadataValue.md((out / "transfer.md").read_text()),
        "rows": len(df), "cities": ", ".join(cities), **mlflow_link(uri, run_id)})

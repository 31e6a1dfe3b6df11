"""``rendered_videos``: condition images and target videos for every sample, plus a gallery."""

import time

import dagster as dg

from ml.io import atomic_dir, read_table
from dagster_project.code_versions import code_version
from dagster_project.assets.raw import city_context
from dagster_project.checks import outcome_result
from dagster_project.metadata import image_markdown
from dagster_project.partitions import cities_partitions
from dagster_project.resources import ComputeResource, PathsResource


@dg.asset(partitions_def=cities_partitions, group_name="video", deps=["samples", "sample_truth", "cell_footprints", "dataset_version"],
          kinds={"numpy", "scikitimage"}, code_version=code_version("rendered_videos"))
def rendered_videos(context: dg.AssetExecutionContext, paths: PathsResource, compute: ComputeResource) -> dg.MaterializeResult:
    """Map-visual representation (DESIGN 7): sharded uint8 arrays under ``outputs/<city>/<profile>/render/r<res>_k<K>/``.

    The folder is replaced atomically only when every sample rendered, so a failed run leaves the
    previous arrays in place.
    """
    from ml.render.dataset import render_samples
    from ml.evaluation.preview import write_previews

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("render", cc.city)
    samples = read_table(cc.paths.table("samples"), "samples")
    out = cc.paths.render_dir(cfg.resolution, cfg.frames)
    t0 = time.perf_counter()
    index = render_samples(
        cc.net, samples, read_table(cc.paths.table("signaling"), "signaling"),
        read_table(cc.paths.table("towers"), "towers"), read_table(cc.paths.sample_truth, "sample_truth"),
        cfg, out, progress=lambda done, total: context.log.info(f"rendered shard {done}/{total}"),
        observation=cc.learned_observation(compute.stage_config("footprints", cc.city)),
    )
    dt = time.perf_counter() - t0
    # a fresh gallery each time (no GIFs left over from earlier windows), swapped in atomically
    gallery_dir = cc.paths.outputs / "render" / "gallery"
    with atomic_dir(gallery_dir) as tmp:
        written = write_previews(out, tmp, net=cc.net, n=4)
    sheet = next((gallery_dir / p.name for p in written if p.name == "contact_sheet.png"), None)
    counts = index["split"].value_counts().to_dict()
    meta = {
        "samples": len(index), **{f"n_{k}": int(v) for k, v in counts.items()},
        "resolution": cfg.resolution, "frames": cfg.frames, "render_s": round(dt, 2),
        "samples_per_s": round(len(index) / max(dt, 1e-9), 1),
        "path": dg.MetadataValue.path(str(out)),
        "gallery": dg.MetadataValue.path(str(gallery_dir)),
    }
    if sheet is not None:
        meta["preview"] = image_markdown(sheet, "condition, target frames, decoded trajectory")
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(asset=rendered_videos, blocking=True,
                description="The rendered arrays' shards have the shapes of the render config and of each other, "
                            "and index.parquet lists every sample once with its split, and nothing else "
                            "(ml.checks.check_rendered_arrays).")
def rendered_arrays_match_samples(context: dg.AssetCheckExecutionContext, paths: PathsResource,
                                  compute: ComputeResource) -> dg.AssetCheckResult:
    from ml.checks import check_rendered_arrays

    cc = city_context(context, paths, compute)
    cfg = compute.stage_config("render", cc.city)
    outcome = check_rendered_arrays(cc.paths.render_dir(cfg.resolution, cfg.frames),
                                    read_table(cc.paths.table("samples"), "samples"), cfg.resolution, cfg.frames)
    context.log.info(outcome.description)
    return outcome_result(outcome)

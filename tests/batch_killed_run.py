"""A batch run (``ml.batch.reconstruct_dataset`` on an operator day) that ``tests/test_scale.py`` kills in one of two
places: ``python tests/batch_killed_run.py DAY OUT after-marker`` pauses each worker after a bucket's done marker
(the test then kills the whole run); ``... DAY OUT worker`` makes each worker write its pid to ``OUT.pids/`` and
pause before its first bucket (the test then kills that one Ray worker process, and the run goes on).

The pauses come from a Ray ``worker_process_setup_hook`` that wraps ``run_bucket`` in each worker process; the
library itself has no test hook.
"""

import sys

import ray

PAUSE_S = 60.0


def _pause_after_each_bucket() -> None:
    import time

    import ml.batch.reconstruct as r

    unit = r.run_bucket

    def paused(*args, **kwargs):
        summary = unit(*args, **kwargs)
        time.sleep(PAUSE_S)
        return summary

    r.run_bucket = paused


def _pause_before_the_first_bucket() -> None:
    import os
    import time
    from pathlib import Path

    import ml.batch.reconstruct as r

    unit = r.run_bucket
    state = {"first": True}

    def paused(fn, bucket, out, *args, **kwargs):
        if state["first"]:
            state["first"] = False
            pids = Path(f"{out}.pids")
            pids.mkdir(exist_ok=True)
            (pids / str(os.getpid())).write_text(bucket.name)
            time.sleep(3.0)
        return unit(fn, bucket, out, *args, **kwargs)

    r.run_bucket = paused


if __name__ == "__main__":
    hook = {"after-marker": _pause_after_each_bucket, "worker": _pause_before_the_first_bucket}[sys.argv[3]]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"worker_process_setup_hook": hook})
    from ml.batch import operator_day_inputs, reconstruct_dataset

    inputs, signaling = operator_day_inputs(sys.argv[1])
    res = reconstruct_dataset(signaling, sys.argv[2], "industrial_hmm", inputs, duration_s=300.0, eval_interval_s=15.0,
                              num_workers=1)
    print(f"buckets run {res.n_buckets_run} of {res.n_buckets}, windows {res.n_windows}")

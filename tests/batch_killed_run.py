"""A batch run (``ml.batch.reconstruct_dataset`` on an operator day) whose workers pause after each bucket's done
marker, so that ``tests/test_scale.py`` can kill it there (``python tests/batch_killed_run.py DAY OUT``).

The pause comes from a Ray ``worker_process_setup_hook`` that wraps ``run_bucket`` in each worker process; the
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


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _pause_after_each_bucket})
    from ml.batch import operator_day_inputs, reconstruct_dataset

    inputs, signaling = operator_day_inputs(sys.argv[1])
    reconstruct_dataset(signaling, sys.argv[2], "industrial_hmm", inputs, duration_s=300.0, eval_interval_s=15.0,
                        num_workers=1)

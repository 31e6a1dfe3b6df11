"""Checks on what the pipeline trains and reports: checkpoints, rendered arrays, the evaluation report.

Each check is a plain function returning a :class:`CheckOutcome` (passed, one-line description, metadata), so
it runs and is tested without an orchestrator; ``dagster_project`` turns the outcomes into blocking asset
checks (a failing one stops the assets below it). The data tables have their own gates (``ml.validation``).
"""

from ml.checks.models import check_video_checkpoint, check_video_weights, judge_decoded_windows
from ml.checks.outcome import CheckOutcome
from ml.checks.render import check_rendered_arrays
from ml.checks.report import check_evaluation_report, configured_methods, read_evaluation_report

__all__ = ["CheckOutcome", "check_video_checkpoint", "check_video_weights", "judge_decoded_windows",
           "check_rendered_arrays", "check_evaluation_report", "configured_methods", "read_evaluation_report"]

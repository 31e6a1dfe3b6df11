"""Evaluation report: JSON in the design's schema, Markdown, figures."""

from ml.report.figures import case_study, error_cdf, robustness_figure, speed_profiles
from ml.report.report import comparison_table, evaluation_json, per_sample_table, write_markdown

__all__ = ["case_study", "error_cdf", "robustness_figure", "speed_profiles", "comparison_table", "evaluation_json",
           "per_sample_table", "write_markdown"]

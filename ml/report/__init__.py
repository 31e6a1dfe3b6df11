"""Evaluation report: JSON in the design's schema, Markdown, figures, and the builder that writes them all."""

from ml.report.evaluation import (EvaluationReport, build_evaluation_report, prediction_file_name, prediction_files,
                                  rewards_file_name)
from ml.report.figures import case_study, error_cdf, robustness_figure, speed_profiles
from ml.report.report import comparison_table, evaluation_json, per_sample_table, write_markdown

__all__ = ["case_study", "error_cdf", "robustness_figure", "speed_profiles", "comparison_table", "evaluation_json",
           "per_sample_table", "write_markdown", "EvaluationReport", "build_evaluation_report", "prediction_file_name",
           "prediction_files", "rewards_file_name"]

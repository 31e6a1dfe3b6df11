"""Operator scale: an operator-sized simulated day and out-of-core pairing (docs/architecture.md, "Operator scale").

Entry points: :func:`generate_operator_day` (``python -m ml.scale generate``), :func:`pair_day`
(``python -m ml.scale pair``).
"""

from ml.scale.operator_day import OperatorDayConfig, day_files, generate_operator_day

__all__ = ["OperatorDayConfig", "day_files", "generate_operator_day"]

"""The Traj-GDPO trainer: ``config`` (``GDPOConfig``, profiles), ``module`` (the Lightning module: rollouts,
rewards, advantages, the clipped update), ``loop`` (``train_gdpo``) and ``cli`` (``python -m ml.train gdpo``).
The SDE step, its log-probability, the advantages and the policy loss stay pure functions in ``ml.models``."""

from __future__ import annotations

from typing import Any

__all__ = ["GDPOResult", "evaluate_policy", "train_gdpo"]


def __getattr__(name: str) -> Any:
    # lazily, so that ``ml.train.gdpo.config`` (read by ml.config's stage registry) does not import Lightning
    if name in __all__:
        from ml.train.gdpo import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'ml.train.gdpo' has no attribute '{name}'")

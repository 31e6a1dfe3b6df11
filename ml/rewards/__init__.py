"""Verifiable rewards for Traj-GDPO: distance, direction and connectivity (DESIGN section 9)."""

from ml.rewards.config import RewardConfig
from ml.rewards.rewards import (
    REWARD_KEYS,
    compute_rewards,
    connectivity_reward,
    direction_reward,
    distance_frame_indices,
    distance_reward,
    path_topology,
)

__all__ = [
    "REWARD_KEYS",
    "RewardConfig",
    "compute_rewards",
    "connectivity_reward",
    "direction_reward",
    "distance_frame_indices",
    "distance_reward",
    "path_topology",
]

"""Pairing of signaling devices with taxis, and cutting of paired data into samples."""

from ml.pairing.config import PairingConfig, SampleConfig
from ml.pairing.pairing import pair_devices, pairing_quality
from ml.pairing.samples import assign_splits, cut_samples

__all__ = ["PairingConfig", "SampleConfig", "pair_devices", "pairing_quality", "cut_samples", "assign_splits"]

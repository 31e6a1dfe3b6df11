"""Raw-data simulation: towers, taxi GPS, radio, signaling, measurement reports, calibration."""

from ml.simulate.config import DECOY_KINDS, SimulationConfig
from ml.simulate.towers import simulate_towers
from ml.simulate.taxis import simulate_taxi_gps

__all__ = ["DECOY_KINDS", "SimulationConfig", "simulate_towers", "simulate_taxi_gps"]
from ml.simulate.phones import simulate_signaling  # noqa: E402

__all__ += ["simulate_signaling"]
from ml.simulate.mr import simulate_measurement_reports  # noqa: E402

__all__ += ["simulate_measurement_reports"]

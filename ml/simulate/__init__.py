"""Raw-data simulation: towers, taxi GPS, radio, signaling, measurement reports, calibration.

Entry points (docs/architecture.md): :func:`simulate_towers`, :func:`simulate_taxi_gps`,
:func:`simulate_signaling`, :func:`simulate_measurement_reports`, :func:`calibration_report`.
"""

from ml.simulate.calibration import calibration_report
from ml.simulate.config import DECOY_KINDS, SCENARIOS, SimulationConfig
from ml.simulate.mr import simulate_measurement_reports
from ml.simulate.phones import simulate_signaling
from ml.simulate.taxis import simulate_taxi_gps
from ml.simulate.towers import simulate_towers

__all__ = [
    "DECOY_KINDS",
    "SCENARIOS",
    "SimulationConfig",
    "simulate_towers",
    "simulate_taxi_gps",
    "simulate_signaling",
    "simulate_measurement_reports",
    "calibration_report",
]

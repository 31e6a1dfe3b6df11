"""Deterministic file locations for one city (the Dagster paths resource wraps this)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

def roads_dir(root: Path, city: str) -> Path:
    """``data/<city>/roads/``: the road network, the same for every profile."""
    return Path(root) / "data" / city / "roads"


@dataclass(frozen=True)
class CityPaths:
    """Where one city's files live for one profile.

    ``data/<city>/<profile>/`` holds the dataset (DVC-versioned per city and profile, pointer
    ``data/<city>/<profile>.dvc``); ``outputs/<city>/<profile>/`` the derived files. Profiles change
    sizes, so each has its own folders: a ``gpu`` run never overwrites what a ``demo`` run wrote.
    The road network does not depend on the profile and is shared (``data/<city>/roads/``).
    """

    root: Path
    city: str
    profile: str

    def __post_init__(self) -> None:
        from ml.config import PROFILES

        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile '{self.profile}' (choose one of {', '.join(PROFILES)})")

    @property
    def data(self) -> Path:
        return self.root / "data" / self.city / self.profile

    @property
    def data_version_file(self) -> Path:
        """DVC's pointer file of :attr:`data` (written by ``dvc add``)."""
        return self.data.with_name(f"{self.profile}.dvc")

    @property
    def outputs(self) -> Path:
        return self.root / "outputs" / self.city / self.profile

    @property
    def logs(self) -> Path:
        return self.outputs / "logs"

    def table(self, name: str) -> Path:
        """Parquet file of a data-contract table (``towers``, ``gps``, ...) or an auxiliary one."""
        return self.data / f"{name}.parquet"

    def operator_day(self, day: str) -> Path:
        """``data/<city>/<profile>/operator/<day>/``: one simulated operator day (``ml.scale``), its pairs and windows."""
        return self.data / "operator" / day

    @property
    def roads_dir(self) -> Path:
        return roads_dir(self.root, self.city)

    @property
    def truth_links(self) -> Path:
        """Hidden simulator truth (device -> vehicle); read only to score the pairing."""
        return self.data / "truth_links.parquet"

    @property
    def antennas(self) -> Path:
        """Hidden simulator truth: where the antennas really stand and point (the towers table is the operator's
        record of them, with its errors); read only by the radio simulation and the calibration report."""
        return self.data / "antennas.parquet"

    @property
    def footprints(self) -> Path:
        """The city's cell footprints (``ml.observation.footprints``), learned from the train windows."""
        return self.data / "cell_footprints.parquet"

    @property
    def sample_truth(self) -> Path:
        """Ground-truth positions of every sample at the evaluation interval."""
        return self.data / "sample_truth.parquet"

    def render_dir(self, resolution: int, frames: int) -> Path:
        return self.outputs / "render" / f"r{resolution}_k{frames}"

    @property
    def checkpoints(self) -> Path:
        return self.outputs / "checkpoints"

    # The training stages' folders and the model file each exports (the names ``ml.train`` writes: the SFT
    # and seq2seq trainers ``model.pt``, GDPO ``gdpo.pt``). Readers take the file from here, never a literal.
    @property
    def sft_dir(self) -> Path:
        """``checkpoints/sft/``: the SFT run (Lightning checkpoints, resume state, the exported model)."""
        return self.checkpoints / "sft"

    @property
    def sft_model(self) -> Path:
        """The SFT model (``ml.models.save_video_model`` format), written by ``sft_checkpoint``."""
        return self.sft_dir / "model.pt"

    @property
    def gdpo_dir(self) -> Path:
        """``checkpoints/gdpo/``: the GDPO run (its resumable state beside the exported model)."""
        return self.checkpoints / "gdpo"

    @property
    def gdpo_model(self) -> Path:
        """The GDPO-tuned model (``ml.models.save_video_model`` format), written by ``gdpo_checkpoint``."""
        return self.gdpo_dir / "gdpo.pt"

    @property
    def seq2seq_dir(self) -> Path:
        return self.checkpoints / "seq2seq"

    @property
    def seq2seq_model(self) -> Path:
        """The seq2seq coordinate baseline, written by ``seq2seq_checkpoint``."""
        return self.seq2seq_dir / "model.pt"

    @property
    def seq2seq_prefix_dir(self) -> Path:
        return self.checkpoints / "seq2seq_prefix"

    @property
    def seq2seq_prefix_model(self) -> Path:
        """The next-GPS seq2seq baseline (GPS prefix as input), written by ``seq2seq_prefix_checkpoint``."""
        return self.seq2seq_prefix_dir / "model.pt"

    def video_models(self) -> dict[str, Path]:
        """The video methods of the evaluation and the model file each reads: ``video_sft``, ``video_gdpo``."""
        return {"video_sft": self.sft_model, "video_gdpo": self.gdpo_model}

    @property
    def predictions(self) -> Path:
        return self.outputs / "predictions"

    @property
    def report(self) -> Path:
        return self.outputs / "report"

    @property
    def evaluation_json(self) -> Path:
        """The evaluation report's numbers (``ml.report.evaluation_json``'s schema), written by ``evaluation_report``."""
        return self.report / "evaluation.json"

    @property
    def evaluation_markdown(self) -> Path:
        return self.report / "evaluation.md"

    @property
    def next_gps_dir(self) -> Path:
        return self.outputs / "next_gps"

    @property
    def next_gps_json(self) -> Path:
        """The next-GPS report, written by ``next_gps_report`` and embedded in the evaluation report."""
        return self.next_gps_dir / "next_gps.json"

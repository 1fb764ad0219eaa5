"""TensorBoard: event files in the run folder (`runs/<name>/tb/`), written by TensorBoard's own writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jasper.tracking.base import missing


class TensorBoardTracker:
    """`torch.utils.tensorboard.SummaryWriter` on `<run>/tb`: every session appends to the same folder."""

    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing("tensorboard") from None
        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def where(self) -> str:
        """The command that shows it."""
        return f"tensorboard --logdir {self.folder}"

    def scalars(self, values: dict[str, float], step: int, axis: str, at: float | None = None) -> None:
        """One scalar series per name, under `<axis>/` (a step sent again after a kill replaces the first copy in
        TensorBoard's reader, which drops a series' points at and past a step it sees again)."""
        for name, value in values.items():
            self.writer.add_scalar(f"{axis}/{name}", value, step, walltime=at)

    def summary(self, table: list[dict[str, Any]], markdown: str, config: dict[str, Any], files: list[Path]) -> None:
        """The table and the config as text, the plots as images."""
        import matplotlib.image

        self.writer.add_text("report", markdown)  # the whole table: a scalar card per cell would bury the curves
        self.writer.add_text("config", "```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```")
        for file in files:
            if file.suffix == ".png":
                image = matplotlib.image.imread(file)[..., :3]  # RGB, without the alpha channel
                self.writer.add_image(f"plots/{file.stem}", image, 0, dataformats="HWC")

    def flush(self) -> None:
        """Write the buffered events to the event file."""
        self.writer.flush()

    def close(self, failed: bool) -> None:
        """Flush the event file."""
        self.writer.close()

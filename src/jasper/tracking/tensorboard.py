"""TensorBoard: event files in the run folder (`runs/<name>/tb/`), one per flush, by TensorBoard's own writer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from jasper.tracking.base import missing


class TensorBoardTracker:
    """TensorBoard's own writer on `<run>/tb`: each flush writes its rows to an event file of its own, which the run's
    tracking state lists until jasper notes them sent (a kill before that: the file goes, the rows are sent again)."""

    name = "tensorboard"

    def __init__(self, folder: Path, note: Callable[[Path], object] | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise missing("tensorboard") from None
        self.folder = Path(folder)
        self.note = note or (lambda written: None)
        self.rows: list[tuple[str, float, int, float | None]] = []
        self.texts: list[tuple[str, str]] = []
        self.images: list[tuple[str, Any]] = []

    def where(self) -> str:
        """The command that shows it."""
        return f"tensorboard --logdir {self.folder}"

    def scalars(self, values: dict[str, float], step: int, axis: str, at: float | None = None) -> None:
        """One scalar series per name, under `<axis>/`, written at the next flush."""
        self.rows += [(f"{axis}/{name}", value, step, at) for name, value in values.items()]

    def summary(self, table: list[dict[str, Any]], markdown: str, config: dict[str, Any], files: list[Path]) -> None:
        """The table and the config as text, the plots as images, written at the next flush."""
        import matplotlib.image

        self.texts.append(("report", markdown))  # the whole table: a scalar card per cell would bury the curves
        self.texts.append(("config", "```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```"))
        for file in files:
            if file.suffix == ".png":
                self.images.append((f"plots/{file.stem}", matplotlib.image.imread(file)[..., :3]))  # RGB, no alpha

    def flush(self) -> None:
        """Write what is held to an event file of its own, closed before this returns."""
        if not (self.rows or self.texts or self.images):
            return
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.folder), filename_suffix=f".{uuid.uuid4().hex[:8]}")
        events: Any = writer.file_writer
        self.note(Path(events.event_writer._file_name))  # removed, and its rows sent again, after a kill
        for tag, value, step, at in self.rows:
            writer.add_scalar(tag, value, step, walltime=at)
        for tag, text in self.texts:
            writer.add_text(tag, text)
        for tag, image in self.images:
            writer.add_image(tag, image, 0, dataformats="HWC")
        writer.close()
        self.rows, self.texts, self.images = [], [], []

    def close(self, failed: bool) -> None:
        """Write what is held."""
        self.flush()

"""``metrics.json``: the record of one run, rewritten atomically at every change of status.

Paths inside the run directory are stored relative to it (``best_checkpoint``), and the
record does not name the directory itself: a copied or moved run is read from its own files.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from dlexp.io import atomic_write_json


def versions() -> dict[str, str]:
    """Versions of dlexp and the libraries a result depends on."""
    import pytorch_lightning
    import torch
    import torchvision

    import dlexp

    return {
        "dlexp": dlexp.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "python": platform.python_version(),
    }


class RunRecord:
    """The fields of ``metrics.json``; :meth:`save` writes them to ``run_dir/metrics.json``."""

    def __init__(
        self,
        run_dir: Path,
        overrides: list[str],
        started: float,
        previous: dict[str, Any] | None = None,
    ) -> None:
        self.path = run_dir / "metrics.json"
        self.started = started
        self.data: dict[str, Any] = {
            "status": "running",
            "overrides": list(overrides),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "versions": versions(),
        }
        self.earlier_seconds = 0.0
        self.writes = True  # False in DDP ranks other than global rank 0
        if previous:  # a resumed run keeps its identity and adds up its time
            self.data.update(
                overrides=previous.get("overrides", self.data["overrides"]),
                started_at=previous.get("started_at", self.data["started_at"]),
                resumed=int(previous.get("resumed", 0)) + 1,
            )
            self.earlier_seconds = float(previous.get("wall_seconds", 0.0))

    def save(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` in, refresh the wall time and write the file (if :attr:`writes`)."""
        self.data.update(fields)
        self.data["wall_seconds"] = round(self.earlier_seconds + time.time() - self.started, 3)
        if self.writes:
            atomic_write_json(self.path, self.data)
        return self.data

"""A Hydra callback that writes the sweep summary when a multirun ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    """At the end of every multirun: ``summary.csv``, ``summary.md`` and a console table.

    :attr:`last_rows` keeps the rows of the last sweep for the command's exit code.
    """

    last_rows: list[dict[str, Any]] = []

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from dlexp.reports.runs import find_runs
        from dlexp.reports.summary import print_table, write_summary

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = write_summary(find_runs([sweep_dir]), sweep_dir)
        SweepSummary.last_rows = rows
        print_table(rows, f"sweep {sweep_dir}")

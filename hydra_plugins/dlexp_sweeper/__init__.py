"""The grid sweeper of ``dlexp train -m`` (``conf/hydra/sweeper/grid.yaml``).

Hydra instantiates plugins only from the ``hydra_plugins`` namespace package, hence its home
here rather than in ``dlexp``.

Hydra's BasicSweeper composes every job of a batch once to validate it, then its launcher
composes each job again to run it. ``dlexp train`` has already composed and validated every
job of the command line, with dlexp's own checks, before Hydra starts
(:func:`dlexp.preflight.check_command_line`), so this sweeper skips the repeat: about a
third of what a short job costs beyond its training.
"""

from __future__ import annotations

from collections.abc import Sequence

from dlexp.compat.hydra import BasicSweeper


class PrecheckedBasicSweeper(BasicSweeper):
    """Hydra's BasicSweeper for job lists that :mod:`dlexp.preflight` has validated."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing to do: every job was composed and validated before Hydra started."""

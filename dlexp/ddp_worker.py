"""A DDP rank > 0 of one job: ``python -m dlexp.ddp_worker <run dir> [--checkpoint PATH]``.

Started by :class:`dlexp.distributed.JobLauncher` (never by hand). It trains the job whose
resolved config rank 0 wrote to ``<run dir>/config.yaml``, continuing from ``--checkpoint``
when rank 0 does; it writes no file (rank 0 records the run).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dlexp.distributed import RESUME_ARG

log = logging.getLogger("dlexp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlexp.ddp_worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(RESUME_ARG, type=Path, default=None)
    args = parser.parse_args(argv)
    rank = os.environ.get("LOCAL_RANK", "?")
    logging.basicConfig(level=logging.WARNING, format=f"[rank {rank}] %(levelname)s %(message)s")

    from dlexp.checkpoints import safe_load
    from dlexp.errors import DlexpError, RunInterrupted
    from dlexp.resume import ResumePlan
    from dlexp.run import train
    from dlexp.run_config import saved_config

    cfg = saved_config(args.run_dir)
    plan = ResumePlan()
    if args.checkpoint is not None:
        state = safe_load(args.checkpoint, "--checkpoint")
        plan = ResumePlan(
            checkpoint=args.checkpoint,
            epoch=int(state["epoch"]) + 1,
            global_step=int(state["global_step"]),
        )
    try:
        train(cfg, args.run_dir, [], plan=plan)
    except (DlexpError, RunInterrupted) as exc:
        # rank 0 meets the same condition and records it; nothing to add here
        log.warning("stopped: %s", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

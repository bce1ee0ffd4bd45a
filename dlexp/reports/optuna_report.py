"""The Optuna part of ``dlexp report``: a sweep of dlexp's Optuna sweeper gets its study's plots
(Optuna's matplotlib visualization) and its best trial by the sweep's own objective.

The objective is the validation metric each job returned (the checkpoint's monitor), so the
best trial here is chosen on validation data; its test metrics are shown beside it, read
from its ``metrics.json``, never used to choose. Pruned and failed trials are counted, and
never best (Optuna's ``best_trial`` considers COMPLETE trials only).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dlexp.config.sweeper import OPTUNA_SWEEPER

# Optuna's figure -> file name stem in the report dir
PLOTS = {
    "plot_optimization_history": "optuna_history",
    "plot_intermediate_values": "optuna_epochs",
    "plot_param_importances": "optuna_importances",
    "plot_slice": "optuna_slice",
}


def optuna_sweep_settings(sweep_dir: Path) -> Any | None:
    """The ``hydra.sweeper`` node of a sweep dir that dlexp's Optuna sweeper ran, else None."""
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        return None
    sweeper = OmegaConf.select(OmegaConf.load(saved), "hydra.sweeper")
    return sweeper if sweeper is not None and sweeper.get("_target_") == OPTUNA_SWEEPER else None


def optuna_sections(paths: list[Path], out_dir: Path) -> list[str]:
    """Markdown lines (and PNGs in ``out_dir``) for every Optuna sweep dir among ``paths``."""
    sweeps = [(p, s) for p in paths if p.is_dir() and (s := optuna_sweep_settings(p)) is not None]
    lines: list[str] = []
    for i, (sweep_dir, settings) in enumerate(sweeps):
        prefix = f"{i + 1}_" if len(sweeps) > 1 else ""
        lines += study_section(sweep_dir, settings, out_dir, prefix)
    return lines


def study_section(sweep_dir: Path, node: Any, out_dir: Path, prefix: str = "") -> list[str]:
    """The study's trial counts, its best trial and its plots."""
    import optuna
    from optuna.trial import TrialState

    from dlexp.config.sweeper import sweeper_settings
    from dlexp.study import storage_url

    settings = sweeper_settings(node)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=settings.study_name, storage=storage_url(settings, sweep_dir)
    )
    trials = study.get_trials(deepcopy=False)
    counts = ", ".join(
        f"{n} {state.name.lower()}"
        for state in TrialState
        if (n := sum(t.state == state for t in trials))
    )
    lines = [
        "",
        f"## Optuna study `{study.study_name}` ({sweep_dir})",
        "",
        f"{counts or 'no'} trials.",
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        params = ", ".join(f"{k}={v}" for k, v in best.params.items())
        lines += [
            "",
            f"**Best trial by the objective (the jobs' validation metric, {settings.direction}):"
            f" trial {best.number}** (job dir `{best.number}`) — {best.value:.4f}; {params}."
            + _test_of(sweep_dir / str(best.number)),
        ]
    lines.append("")
    for name, stem in PLOTS.items():
        path = _plot(study, name, out_dir / f"{prefix}{stem}.png")
        if path is not None:
            lines.append(f"![{path.stem}]({path.name})\n")
    return lines


def _test_of(job_dir: Path) -> str:
    """`` Its test/acc: …`` from the job's record (shown, not used to choose)."""
    from dlexp.errors import DlexpError
    from dlexp.resume import read_record

    try:
        test = (read_record(job_dir) or {}).get("test") or {}
    except DlexpError:
        return ""
    shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))
    return f" Its test metrics (not used to choose): {shown}." if shown else ""


def _plot(study: Any, name: str, path: Path) -> Path | None:
    """One of Optuna's matplotlib figures as a PNG; None where the study cannot give it
    (too few trials, one parameter for importances, no epochs reported)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization.matplotlib as vis
    from optuna.exceptions import ExperimentalWarning

    from dlexp.io import atomic_write_bytes
    from dlexp.reports.plots import DPI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            axes = getattr(vis, name)(study)
        except (ValueError, RuntimeError):
            return None
    figure = np.ravel(axes)[0].figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")  # legends outside
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())

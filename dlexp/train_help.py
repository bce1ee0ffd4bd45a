"""``dlexp train --help``: the user-facing config groups and their options, from ``dlexp/conf``.

Read from the config directory alone (no composition, no torch): the schemas Hydra stores
under ``schema/*`` are an implementation detail and are not listed.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN_GROUPS = ("hydra",)

USAGE = """usage: dlexp train [group=option ...] [key=value ...] [-m] [--cfg job] [--info]

Trains and tests one configuration composed by Hydra from dlexp/conf; with -m/--multirun,
one job per point of the sweep (e.g. -m model.dropout=0,0.2,0.5 model.norm=none,batch).
Every job is checked before anything is created: bad input is one line and exit code 2.

  --cfg job       print the composed config and exit (nothing is created)
  --info          Hydra's view of the config search path and defaults
  --hydra-help    Hydra's own flags (launchers, sweepers, shell completion)
  resume=<dir>    continue a run in its own directory
  overwrite=true  train into a directory that is not empty (its contents go to attempts/<n>/)
  -m data.folds=5 data.fold=all
                  k-fold cross-validation: one job per fold, each validated on its fold
                  (dlexp report: mean ± std over the folds)
  +hparams_search=lenet5_optuna
                  an Optuna search: hydra.sweeper.n_trials=20, hydra.sweeper.pruner=
                  median|hyperband|none (keys: dlexp/config/sweeper.py); dlexp resume-sweep
                  <sweep dir> continues an interrupted one up to n_trials
  logger=[tensorboard,mlflow]  several loggers at once (mlflow and wandb are extras:
                  pip install 'dlexp[mlflow]', 'dlexp[wandb]'; README: Loggers)

Keys and defaults of each group: dlexp/config/<group>.py, or --cfg job.
"""


def config_groups(conf_dir: Path) -> dict[str, list[str]]:
    """``{group: [option, ...]}`` for the groups under ``conf_dir`` that users pick from."""
    groups: dict[str, list[str]] = {}
    for folder in sorted(p for p in conf_dir.iterdir() if p.is_dir()):
        if folder.name in HIDDEN_GROUPS:
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            groups[folder.name] = options
    return groups


def print_train_help() -> None:
    from dlexp.config.root import CONF_DIR

    print(USAGE)
    print("== Configuration groups ==")
    print("Compose your configuration from those groups (group=option; +experiment=...)\n")
    for group, options in config_groups(CONF_DIR).items():
        print(f"{group}: {', '.join(options)}")

"""dlexp's Optuna sweeper: pruning, resuming an interrupted study, sampling, the HPO report."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from PIL import Image

from dlexp.config.sweeper import OptunaSweeperConfig
from dlexp.study import open_study, search_space

from conftest import QUICK, read_metrics, run_inprocess, start_cli, wait_for

SEARCH = ["+hparams_search=lenet5_optuna", *QUICK]


def load(storage: str, name: str = "lenet5_digits") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """A study shared by two sweeps: a good trial (lr 0.003), then a hopeless one (lr 1e-7)
    that the median pruner compares with it after each epoch."""
    root = tmp_path_factory.mktemp("pruned")
    storage = f"sqlite:///{root / 'study.db'}"
    shared = [
        *SEARCH,  # 2 epochs
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.startup_trials=1",
    ]
    good, hopeless = root / "good", root / "hopeless"
    line = [*shared, "hydra.sweeper.n_trials=1", "optimizer.lr=0.003"]
    assert run_inprocess("train", *line, f"hydra.sweep.dir={good}", cwd=root) == 0
    line = [*shared, "hydra.sweeper.n_trials=2", "optimizer.lr=1e-7"]
    code = run_inprocess("train", *line, f"hydra.sweep.dir={hopeless}", cwd=root)
    return code, storage, good, hopeless


def test_a_hopeless_trial_is_pruned_before_its_last_epoch(pruned):
    code, storage, good, hopeless = pruned
    assert code == 0  # pruning is how a trial may end, not a failure
    assert read_metrics(good / "0")["status"] == "completed"
    assert read_metrics(good / "0")["epochs"] == 2
    record = read_metrics(hopeless / "1")  # n_trials counts the study's trials: this is trial 1
    assert record["status"] == "pruned"
    assert record["pruned_at_epoch"] == record["epochs"] == 1 < 2
    assert record["test"] == {}  # a pruned trial is not tested
    assert "optimizer.lr=1e-7" in record["overrides"]
    study = load(storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    # the trial holds what the job reported: its val/acc after epoch 1
    with open(hopeless / "1" / "epochs.csv", newline="") as f:
        (epoch,) = list(csv.DictReader(f))
    assert study.trials[1].intermediate_values == {1: pytest.approx(float(epoch["val/acc"]))}
    assert study.trials[1].intermediate_values[1] < study.trials[0].intermediate_values[1]


def test_pruned_trials_are_counted_apart_and_never_best(pruned):
    _, _, good, hopeless = pruned
    assert [r["status"] for r in summary_rows(hopeless)] == ["pruned"]
    assert (hopeless / "summary.md").read_text().splitlines()[2] == "0 of 1 completed, 1 pruned."
    results = yaml.safe_load((hopeless / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 1, "pruned": 1}
    assert results["best_trial"] == 0
    assert results["best_value"] == pytest.approx(read_metrics(good / "0")["best"]["val/acc"])


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A 3-trial sweep stopped by SIGTERM during trial 1, then ``dlexp resume-sweep``."""
    root = tmp_path_factory.mktemp("resumed")
    sweep = root / "sweep"
    line = [*SEARCH, "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner=none"]
    proc = start_cli("train", *line, f"hydra.sweep.dir={sweep}", cwd=root)
    wait_for((sweep / "1" / "checkpoints" / "last.ckpt").is_file, proc)  # an epoch done
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    before = [(t.state, t.params) for t in load(storage).trials]
    first = read_metrics(sweep / "0")
    cut = read_metrics(sweep / "1")
    code = run_inprocess("resume-sweep", str(sweep), cwd=root)
    return code, sweep, storage, before, first, cut


def test_an_interrupted_sweep_resumes_to_exactly_n_trials(resumed):
    code, sweep, storage, before, first, cut = resumed
    assert [state for state, _ in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert cut["status"] == "interrupted"
    assert code == 0
    study = load(storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2"]
    assert read_metrics(sweep / "0") == first  # kept, not trained again
    again = read_metrics(sweep / "1")  # the interrupted trial ran on from its checkpoint
    assert again["status"] == "completed" and again["resumed"] == 1
    assert again["resumes"][0]["at_epoch"] >= 1  # not started again
    assert again["overrides"] == cut["overrides"]
    assert study.trials[1].params == before[1][1]  # with its own parameters
    assert [r["status"] for r in summary_rows(sweep)] == ["completed"] * 3
    for trial in study.trials:  # each trial's value is its job's objective
        best = read_metrics(sweep / str(trial.number))["best"]["val/acc"]
        assert trial.value == pytest.approx(best)


def test_no_trial_is_proposed_twice(resumed):
    _, _, storage, _, _, _ = resumed
    params = [tuple(sorted(t.params.items())) for t in load(storage).trials]
    assert len(params) == len(set(params)) == 3


def test_a_continued_study_and_a_new_seed_draw_new_points(tmp_path):
    """The sampler is seeded from (seed, trials in the study): reopening the study with the
    same seed goes on to new points (it used to replay the first ones), another seed differs."""
    cfg = OptunaSweeperConfig(study_name="s", sampler="random")
    space, _ = search_space(["x=interval(0.0, 1.0)", "n=choice(1, 2, 3, 4, 5, 6, 7, 8)"])

    def draw(sweep_dir: Path, seed: int, count: int) -> list[tuple]:
        sweep_dir.mkdir(exist_ok=True)
        study = open_study(cfg, sweep_dir, seed=seed)
        points = []
        for _ in range(count):
            trial = study.ask(space)
            study.tell(trial, 0.5)
            points.append(tuple(sorted(trial.params.items())))
        return points

    first = draw(tmp_path / "a", seed=0, count=3)
    continued = draw(tmp_path / "a", seed=0, count=3)
    assert len(set(first + continued)) == 6
    assert draw(tmp_path / "b", seed=0, count=3) == first  # a seed repeats a fresh study
    assert set(draw(tmp_path / "c", seed=1, count=3)).isdisjoint(first)


@pytest.mark.parametrize("pruner", ["median", "hyperband", "none"])
def test_each_pruner_judges_the_epochs_a_job_reports_through_its_own_study(tmp_path, pruner):
    """A job reports through its own handle of the study (as dlexp.pruning's callback does);
    median and hyperband prune trials far below the others, none never prunes."""
    from dlexp.compat.optuna import running_trial

    cfg = OptunaSweeperConfig(study_name="p", pruner=pruner, startup_trials=1)
    space, _ = search_space(["x=interval(0.0, 1.0)"])
    sweeper, job = open_study(cfg, tmp_path, seed=0), open_study(cfg, tmp_path)

    def trial_run(value: float) -> int | None:
        """The epoch after which the trial was pruned (None: it ran all 5)."""
        trial = sweeper.ask(space)
        reporting = running_trial(job, trial.number)
        for epoch in range(1, 6):
            reporting.report(value, step=epoch)
            if reporting.should_prune():
                sweeper.tell(trial.number, state=TrialState.PRUNED)
                return epoch
        sweeper.tell(trial.number, value)
        return None

    assert [trial_run(0.9) for _ in range(5)] == [None] * 5
    cut = [trial_run(0.1) for _ in range(3)]
    if pruner == "none":
        assert cut == [None] * 3
    else:
        assert any(epoch is not None and epoch < 5 for epoch in cut), cut


def test_report_adds_the_study_plots_and_the_best_trial_by_validation(resumed):
    from dlexp.reports.report import build_report

    _, sweep, _, _, _, _ = resumed
    out = sweep.parent / "report"
    text = build_report([sweep], out).read_text()
    for stem in ("optuna_history", "optuna_epochs", "optuna_importances", "optuna_slice"):
        with Image.open(out / f"{stem}.png") as image:
            assert image.format == "PNG" and min(image.size) > 100
        assert f"![{stem}]({stem}.png)" in text
    values = {j: read_metrics(sweep / j)["best"]["val/acc"] for j in ("0", "1", "2")}
    best = max(values, key=values.get)
    assert f"trial {best}** (job dir `{best}`) — {values[best]:.4f}" in text
    assert "3 complete trials." in text


def test_the_plugin_module_imports_neither_optuna_nor_torch(tmp_path):
    """Hydra imports every hydra_plugins module at each start (a --help, a rejected override):
    the Optuna sweeper's module must cost nothing there."""
    from conftest import run_python

    code = "import sys, hydra_plugins.dlexp_sweeper.optuna_sweeper\nprint('optuna' in sys.modules)"
    done, heavy = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"] and heavy == []

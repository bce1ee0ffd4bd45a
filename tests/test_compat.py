"""Contract tests of the private Hydra, OmegaConf and Lightning APIs dlexp uses (dlexp.compat).

Each test runs one wrapped API on tiny real inputs, so an upgrade that changes it fails here,
naming what moved, instead of somewhere inside a run or a sweep.
"""

from __future__ import annotations

import enum
import inspect
import random
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlexp.compat import hydra as compat_hydra
from dlexp.compat.hydra import (
    apply_value_overrides,
    child_node,
    describe_config_error,
    grid_jobs,
    hydra_args_parser,
    node_is_none,
)

from conftest import REPO, run_python


def parse(*overrides: str):
    return OverridesParser.create().parse_overrides(list(overrides))


# -- a tiny structured config dir --------------------------------------------------------------


class Color(enum.Enum):
    red = 1
    blue = 2


@dataclass
class OptSchema:
    name: str = "sgd"
    lr: float = 0.1


@dataclass
class CompatSchema:
    x: int = 1
    flag: bool = False
    color: Color = Color.red
    opt: OptSchema = field(default_factory=OptSchema)
    extra: OptSchema | None = None


ConfigStore.instance().store(name="compat_test_schema", node=CompatSchema)


@pytest.fixture(scope="module")
def conf_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("conf")
    (root / "config.yaml").write_text(
        "defaults:\n  - compat_test_schema\n  - opt: sgd\n  - _self_\nx: 2\n"
    )
    (root / "opt").mkdir()
    (root / "opt" / "sgd.yaml").write_text("name: sgd\nlr: 0.1\n")
    (root / "opt" / "adam.yaml").write_text("name: adam\nlr: 0.001\n")
    (root / "opt" / "badtype.yaml").write_text("name: bad\nlr: fast\n")
    (root / "opt" / "badkey.yaml").write_text("name: bad\nzz: 1\n")
    return root


def composed(conf_dir: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(conf_dir), version_base=None):
        return compose("config", overrides=list(overrides))


def composition_error(conf_dir: Path, *overrides: str) -> BaseException:
    with pytest.raises(Exception) as info:
        composed(conf_dir, *overrides)
    return info.value


# -- Hydra: command line, overrides, sweeps ----------------------------------------------------


def test_compat_hydra_imports_neither_torch_nor_lightning():
    """It is on ``dlexp train``'s fast path, used before anything heavy is imported."""
    code = (
        "import sys\n"
        "import dlexp.compat.hydra as h\n"
        "import hydra_plugins.dlexp_sweeper\n"
        "h.hydra_args_parser().parse_args(['-m', 'a=1'])\n"
        "from hydra.core.override_parser.overrides_parser import OverridesParser\n"
        "h.grid_jobs(OverridesParser.create().parse_overrides(['a=1,2']))\n"
    )
    proc, heavy = run_python(code, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert heavy == []


def test_hydra_args_parser_reads_what_dlexp_train_uses():
    args = hydra_args_parser().parse_args(
        ["-m", "--config-dir", "/x", "--config-name", "exp", "a=1", "b=2"]
    )
    assert args.multirun is True
    assert args.overrides == ["a=1", "b=2"]
    assert (args.config_dir, args.config_name) == ("/x", "exp")
    plain = hydra_args_parser().parse_args(["a=1"])
    assert plain.multirun is False and plain.config_dir is None and plain.config_name is None
    assert plain.overrides == ["a=1"]


def test_apply_value_overrides_gives_what_compose_gives(conf_dir):
    overrides = ["x=3", "opt.lr=0.5", "+opt.extra_key=1", "++x=4", "~flag"]
    cfg = composed(conf_dir)
    apply_value_overrides(parse(*overrides), cfg)
    assert cfg.x == 4 and cfg.opt.lr == 0.5 and cfg.opt.extra_key == 1 and "flag" not in cfg
    assert cfg == composed(conf_dir, *overrides)


def test_apply_value_overrides_raises_what_compose_raises(conf_dir):
    cfg = composed(conf_dir)
    with pytest.raises(ConfigCompositionException) as unknown:
        apply_value_overrides(parse("y=3"), cfg)
    assert describe_config_error(unknown.value).kind == "unknown_key"
    with pytest.raises(ConfigCompositionException) as wrong:
        apply_value_overrides(parse("x=abc"), cfg)
    info = describe_config_error(wrong.value)
    assert (info.kind, info.key, info.value, info.expected_type) == ("wrong_type", "x", "abc", int)
    assert cfg.x == 2  # nothing applied


def test_grid_jobs_is_hydras_cartesian_product_in_its_order():
    assert grid_jobs(parse("a=1,2", "b=x,y")) == [
        ["a=1", "b=x"],
        ["a=1", "b=y"],
        ["a=2", "b=x"],
        ["a=2", "b=y"],
    ]
    assert grid_jobs(parse("c=3", "a=range(1,3)")) == [["c=3", "a=1"], ["c=3", "a=2"]]
    assert grid_jobs(parse("a=1,2", "a=5")) == [["a=5"]]  # the last value of a key wins
    assert grid_jobs([]) == [[]]
    with pytest.raises(HydraException, match="does not support sweep type"):
        grid_jobs(parse("a=interval(0,1)"))


def test_basic_sweeper_validates_each_batch_through_the_hook_the_plugin_overrides(tmp_path):
    """PrecheckedBasicSweeper overrides ``validate_batch_is_legal``; the sweep must call it."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    # Hydra's plugin scan (once per process) executes the plugin modules again, which makes
    # new BasicSweeper and PrecheckedBasicSweeper classes: take both after it.
    Plugins.instance()
    from hydra_plugins.dlexp_sweeper import PrecheckedBasicSweeper

    BasicSweeper = compat_hydra.BasicSweeper
    assert issubclass(PrecheckedBasicSweeper, BasicSweeper) and issubclass(BasicSweeper, Sweeper)
    # conf/hydra/sweeper/grid.yaml passes Hydra's basic sweeper config to the constructor
    assert list(inspect.signature(BasicSweeper.__init__).parameters) == [
        "self",
        "max_batch_size",
        "params",
    ]
    assert list(inspect.signature(Sweeper.validate_batch_is_legal).parameters) == ["self", "batch"]
    validated, launched = [], []

    class Spy(BasicSweeper):
        def validate_batch_is_legal(self, batch) -> None:
            validated.append([list(job) for job in batch])

    class Launcher:
        def launch(self, batch, initial_job_idx):
            launched.append([list(job) for job in batch])
            return [SimpleNamespace(return_value=None) for _ in batch]

    sweeper = Spy(max_batch_size=None, params={"b": "x,y"})
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.hydra_context = SimpleNamespace(config_loader=None)
    sweeper.launcher = Launcher()
    sweeper.sweep(["a=1,2"])
    jobs = [["b=x", "a=1"], ["b=x", "a=2"], ["b=y", "a=1"], ["b=y", "a=2"]]
    assert validated == launched == [jobs]
    assert PrecheckedBasicSweeper(max_batch_size=None).validate_batch_is_legal(jobs) is None


def test_job_configs_equal_hydras_composition_of_each_job(monkeypatch):
    """The prechecked launcher's configs are those Hydra's ``load_sweep_config`` composes;
    it composes once per choice of options, and derives the jobs that only set values."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from dlexp.compat.hydra.launch import JobConfigs
    from dlexp.config import CONF_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base=None, job_name="train"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config", overrides=["trainer.max_epochs=1"], run_mode=RunMode.MULTIRUN
        )
        jobs = [
            ["seed=0", "model=mlp", "optimizer.lr=0.1"],
            ["seed=1", "model=mlp", "optimizer.lr=0.1"],  # derived
            ["seed=0", "model=lenet5", "optimizer.lr=0.1"],  # other options: composed
            ["seed=1", "model=lenet5", "optimizer.lr=0.01"],  # derived from the one above
            ["seed=2", "model=mlp", "model.hidden_sizes=[8]"],  # another key: composed
            ["seed=3", "model=mlp", "model.hidden_sizes=[4,4]"],  # derived
        ]
        configs = JobConfigs(loader, master)
        composed = []
        compose = loader.load_sweep_config
        monkeypatch.setattr(
            loader, "load_sweep_config", lambda m, o: composed.append(o) or compose(m, o)
        )
        for job in jobs:
            mine = OmegaConf.to_yaml(configs(job))
            assert mine == OmegaConf.to_yaml(compose(master, job)), job
        assert composed == [jobs[0], jobs[2], jobs[4]]
    GlobalHydra.instance().clear()


# -- OmegaConf: nodes --------------------------------------------------------------------------


def test_child_node_and_node_is_none_read_nodes_without_resolving():
    cfg = OmegaConf.structured(CompatSchema)
    cfg.x = "${oops}"  # an interpolation: reading cfg.x would fail
    node = child_node(cfg, "x")
    assert node is not None and OmegaConf.is_interpolation(cfg, "x")
    assert node_is_none(child_node(cfg, "extra")) and not node_is_none(child_node(cfg, "opt"))


# -- Hydra/OmegaConf: composition errors -------------------------------------------------------


def test_unknown_key_names_the_key_and_the_keys_of_its_node(conf_dir):
    info = describe_config_error(composition_error(conf_dir, "y=3"))
    assert (info.kind, info.key) == ("unknown_key", "y")
    assert {"x", "flag", "color", "opt"} <= set(info.known_keys)
    nested = describe_config_error(composition_error(conf_dir, "opt.zz=1"))
    assert (nested.kind, nested.key, nested.known_keys) == ("unknown_key", "opt.zz", ("name", "lr"))
    assert "full_key" not in nested.message and nested.message


@pytest.mark.parametrize(
    ("override", "key", "value", "expected"),
    [
        ("x=abc", "x", "abc", int),
        ("opt.lr=fast", "opt.lr", "fast", float),
        ("flag=maybe", "flag", "maybe", bool),
        ("color=green", "color", "green", Color),
    ],
)
def test_wrong_type_names_the_key_the_value_and_the_type(conf_dir, override, key, value, expected):
    info = describe_config_error(composition_error(conf_dir, override))
    assert (info.kind, info.key, info.value, info.expected_type) == (
        "wrong_type",
        key,
        value,
        expected,
    )


def test_errors_in_a_config_file_name_the_file(conf_dir):
    info = describe_config_error(composition_error(conf_dir, "opt=badtype"))
    assert (info.kind, info.key, info.value, info.expected_type) == (
        "wrong_type",
        "opt.lr",
        "fast",
        float,
    )
    assert info.config_path == "opt/badtype"
    unknown = describe_config_error(composition_error(conf_dir, "opt=badkey"))
    assert (unknown.kind, unknown.key, unknown.config_path) == (
        "unknown_key",
        "opt.zz",
        "opt/badkey",
    )


def test_unknown_group_option_names_the_group_and_its_options(conf_dir):
    info = describe_config_error(composition_error(conf_dir, "opt=nope"))
    assert (info.kind, info.key, info.value) == ("missing_option", "opt", "nope")
    assert info.options == ("adam", "badkey", "badtype", "sgd")


def test_append_of_an_existing_key(conf_dir):
    info = describe_config_error(composition_error(conf_dir, "+x=3"))
    assert (info.kind, info.key) == ("append_existing", "x")
    nested = describe_config_error(composition_error(conf_dir, "+opt.lr=1"))
    assert (nested.kind, nested.key) == ("append_existing", "opt.lr")


def test_delete_of_a_missing_key(conf_dir):
    info = describe_config_error(composition_error(conf_dir, "~nokey"))
    assert (info.kind, info.key, info.value) == ("delete_missing", "nokey", None)
    other = describe_config_error(composition_error(conf_dir, "~x=5"))
    assert (other.kind, other.key, other.value) == ("delete_missing", "x", "5")
    group = describe_config_error(composition_error(conf_dir, "~opt=adam"))
    assert (group.kind, group.key, group.value) == ("delete_missing", "opt", "adam")


def test_parse_errors_and_sweeps_without_multirun(conf_dir):
    info = describe_config_error(composition_error(conf_dir, "x=[1"))
    assert (info.kind, info.override) == ("parse", "x=[1")
    assert info.message and "\n" not in info.message
    sweep = describe_config_error(composition_error(conf_dir, "x=1,2"))
    assert (sweep.kind, sweep.key, sweep.override) == ("needs_multirun", "x", "x=1,2")


def test_validation_errors_outside_composition():
    cfg = OmegaConf.structured(CompatSchema)
    with pytest.raises(OmegaConfBaseException) as wrong:
        cfg.opt.lr = "fast"
    info = describe_config_error(wrong.value)
    assert (info.kind, info.key, info.expected_type) == ("wrong_type", "opt.lr", float)
    with pytest.raises(OmegaConfBaseException) as unknown:
        cfg.opt.zz = 1
    assert describe_config_error(unknown.value).kind == "unknown_key"
    other = describe_config_error(ValueError("boom\nmore"))
    assert (other.kind, other.message, other.key) == ("other", "boom", None)


# -- Lightning ---------------------------------------------------------------------------------


def test_rng_states_round_trip():
    from dlexp.compat.lightning import collect_rng_states, set_rng_states

    states = collect_rng_states(include_cuda=False)
    assert {"torch", "python", "numpy"} <= set(states) and "torch.cuda" not in states
    # dlexp.guards converts this tuple: (kind, keys, pos, has_gauss, gauss)
    assert len(states["numpy"]) == 5
    kind, keys, *_ = states["numpy"]
    assert kind == "MT19937" and keys.dtype == np.uint32
    first = (torch.rand(3), random.random(), np.random.rand())
    set_rng_states(states)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
    assert "torch.cuda" in collect_rng_states(include_cuda=True)


def test_subprocess_script_launcher_has_what_dlexp_overrides_and_reads():
    from lightning_fabric.plugins.environments import LightningEnvironment
    from pytorch_lightning.strategies.launchers.subprocess_script import (
        _SubprocessScriptLauncher,
    )

    assert list(inspect.signature(_SubprocessScriptLauncher.__init__).parameters) == [
        "self",
        "cluster_environment",
        "num_processes",
        "num_nodes",
    ]
    for name in ("_call_children_scripts", "_check_can_spawn_children"):
        assert list(inspect.signature(getattr(_SubprocessScriptLauncher, name)).parameters) == [
            "self"
        ]
    env = LightningEnvironment()
    launcher = _SubprocessScriptLauncher(env, 2, 1)
    assert launcher.cluster_environment is env
    assert (launcher.num_processes, launcher.num_nodes, launcher.procs) == (2, 1, [])


def test_launch_starts_children_through_the_hook_and_watches_their_list(monkeypatch):
    """JobLauncher.reap empties ``procs`` to stop Lightning's observer: it must be that list."""
    from lightning_fabric.plugins.environments import LightningEnvironment

    from dlexp.compat.lightning import ScriptLauncher

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # launch() sets torch's threads otherwise
    started = []
    popen = subprocess.Popen

    def lightnings_own_start(*args, **kwargs):
        raise AssertionError("Lightning started a child itself: start_children was bypassed")

    # Should launch() no longer call the hook, Lightning would run this pytest again per rank.
    monkeypatch.setattr(subprocess, "Popen", lightnings_own_start)

    class Launcher(ScriptLauncher):
        def start_children(self) -> None:
            self.check_can_spawn_children()
            started.append(self.num_processes)
            self.procs.append(popen([sys.executable, "-c", "pass"]))

    launcher = Launcher(LightningEnvironment(), 2, 1)
    assert launcher.launch(lambda a, b=0: a + b, 1, b=2) == 3
    assert started == [2] and len(launcher.procs) == 1
    launcher.procs[0].wait()
    watchers = [
        thread
        for thread in threading.enumerate()
        if any(value is launcher.procs for value in vars(thread).values())
    ]
    assert len(watchers) == 1, "Lightning's process observer no longer watches launcher.procs"
    with pytest.raises(RuntimeError, match="only create subprocesses once"):
        launcher.check_can_spawn_children()
    launcher.procs.clear()

    monkeypatch.setenv("LOCAL_RANK", "1")  # the cluster starts the processes: no children
    external = Launcher(LightningEnvironment(), 2, 1)
    assert external.launch(lambda: "ran") == "ran" and started == [2]
    with pytest.raises(RuntimeError, match="local_rank > 0"):
        external.check_can_spawn_children()


def test_ddp_strategy_takes_its_launcher_from_make_launcher(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.strategies import DDPStrategy

    from dlexp.compat.lightning import LauncherDDPStrategy, ScriptLauncher

    assert list(inspect.signature(DDPStrategy._configure_launcher).parameters) == ["self"]
    made = []

    class Strategy(LauncherDDPStrategy):
        def make_launcher(self) -> ScriptLauncher:
            launcher = ScriptLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
            made.append(launcher)
            return launcher

    trainer = pl.Trainer(
        strategy=Strategy(),
        accelerator="cpu",
        devices=2,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    assert len(made) == 1 and trainer.strategy.launcher is made[0]
    assert made[0].cluster_environment is not None and made[0].num_processes == 2


def test_light_hook_module_sees_every_attribute_lightning_sets_in_a_step(tmp_path):
    """Lightning sets only HOOK_BOOKKEEPING on the module in a step, and self.log reads it."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from dlexp.compat.lightning import HOOK_BOOKKEEPING, LightHookModule

    set_in_steps: list[str] = []

    class Tiny(LightHookModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.stepping = False

        def __setattr__(self, name, value):
            if getattr(self, "stepping", False):
                set_in_steps.append(name)
            super().__setattr__(name, value)

        def on_train_batch_start(self, batch, batch_idx):
            object.__setattr__(self, "stepping", True)

        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])
            self.log("train/loss", loss, on_step=True, on_epoch=False)  # reads the hook name
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            object.__setattr__(self, "stepping", False)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    module = Tiny()
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=4))
    assert set_in_steps and set(set_in_steps) <= HOOK_BOOKKEEPING
    assert "train/loss" in trainer.callback_metrics
    # a plain attribute, not one of the module's parameters, buffers or submodules
    assert "_current_fx_name" in vars(module) and isinstance(module.layer, torch.nn.Linear)


def test_running_trial_is_the_live_trial_of_that_number(tmp_path):
    """dlexp.compat.optuna.running_trial: a job's reports land on its own trial."""
    import optuna

    from dlexp.compat.optuna import running_trial

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    first, second = study.ask(), study.ask()
    reopened = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    again = running_trial(reopened, 1)
    assert isinstance(again, optuna.trial.Trial) and again.number == second.number == 1
    again.report(0.25, step=1)
    study.tell(first, 0.5)
    assert study.trials[1].intermediate_values == {1: 0.25}
    assert study.trials[0].intermediate_values == {}
    with pytest.raises(LookupError):
        running_trial(study, 7)

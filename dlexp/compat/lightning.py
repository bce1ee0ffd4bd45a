"""Lightning's private APIs that dlexp uses.

Wrapped private APIs (each with a contract test in ``tests/test_compat.py``):

* :func:`collect_rng_states` / :func:`set_rng_states`:
  ``lightning_fabric.utilities.seed._collect_rng_states`` / ``_set_rng_states``
* :class:`ScriptLauncher`: ``pytorch_lightning.strategies.launchers.subprocess_script.
  _SubprocessScriptLauncher``, its ``_call_children_scripts`` hook (as
  :meth:`ScriptLauncher.start_children`) and ``_check_can_spawn_children`` (as
  :meth:`ScriptLauncher.check_can_spawn_children`)
* :class:`LauncherDDPStrategy`: ``DDPStrategy._configure_launcher`` and ``Strategy._launcher``
  (as :meth:`LauncherDDPStrategy.make_launcher`)
* :class:`DescribedRichProgressBar`: ``RichProgressBar._get_train_description`` (as
  :meth:`DescribedRichProgressBar.epoch_description`)
* :class:`LightHookModule`: ``LightningModule._current_fx_name``, the attribute Lightning sets
  around every hook call
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

__all__ = [
    "HOOK_BOOKKEEPING",
    "DescribedRichProgressBar",
    "LauncherDDPStrategy",
    "LightHookModule",
    "ScriptLauncher",
    "collect_rng_states",
    "set_rng_states",
]


def collect_rng_states(include_cuda: bool = True) -> dict[str, Any]:
    """The global RNG states of this process, as Lightning saves them.

    Keys: ``"torch"`` (a ByteTensor), ``"python"`` (``random.getstate()``), ``"numpy"``
    (``numpy.random.get_state()``: ``(kind, keys: uint32 array, pos, has_gauss, gauss)``; only
    where numpy is installed) and, with ``include_cuda``, ``"torch.cuda"`` (one state per
    device; empty without CUDA). Wraps ``lightning_fabric.utilities.seed._collect_rng_states``.
    """
    return _collect_rng_states(include_cuda=include_cuda)


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states from :func:`collect_rng_states` (``"numpy"``, ``"torch.cuda"`` optional).

    Wraps ``lightning_fabric.utilities.seed._set_rng_states``.
    """
    _set_rng_states(states)


# what Lightning sets on the LightningModule around every hook call (a str or None)
HOOK_BOOKKEEPING = frozenset({"_current_fx_name"})


class LightHookModule(pl.LightningModule):
    """A LightningModule whose per-hook bookkeeping bypasses ``nn.Module.__setattr__``.

    Lightning sets ``_current_fx_name`` before and after every hook it calls, about 50 times a
    training step; ``nn.Module.__setattr__`` first checks each value against parameters,
    buffers and submodules (two metaclass ``isinstance`` calls). A plain object attribute is
    the same thing for a str or None, at a fraction of the cost.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in HOOK_BOOKKEEPING:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class ScriptLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher that starts the other local ranks as subprocesses, with public hooks.

    ``ScriptLauncher(cluster_environment, num_processes, num_nodes)``; Lightning's attributes
    ``cluster_environment``, ``num_processes``, ``num_nodes`` and ``procs`` (the
    ``subprocess.Popen`` of each started rank, this process excluded).

    Lightning's ``launch()`` checks the cluster settings, calls :meth:`start_children` unless
    the cluster environment creates the processes itself, then watches the very list
    ``procs`` in a thread that kills this process when a child fails, and runs the function.
    """

    def start_children(self) -> None:
        """Start local ranks ``1 .. num_processes - 1``, appending each process to ``procs``.

        Lightning's own: run this process's command line again, once per rank.
        """
        super()._call_children_scripts()

    def check_can_spawn_children(self) -> None:
        """Raise ``RuntimeError`` if children were started already or this is not local rank 0."""
        self._check_can_spawn_children()

    def _call_children_scripts(self) -> None:  # Lightning's hook, called by launch()
        self.start_children()


class LauncherDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy with the launcher that :meth:`make_launcher` returns.

    Lightning configures the launcher once, when the Trainer sets up its strategy (after
    ``cluster_environment`` is known); ``strategy.launcher`` then returns it.
    """

    def make_launcher(self) -> ScriptLauncher:
        """The launcher of this strategy's processes."""
        raise NotImplementedError

    def _configure_launcher(self) -> None:  # Lightning's hook, called by the Trainer
        self._launcher = self.make_launcher()


class DescribedRichProgressBar(RichProgressBar):
    """Lightning's rich progress bar, its training bar labelled by :meth:`epoch_description`."""

    def epoch_description(self, epoch: int) -> str:
        """The label of the training bar in (0-based) ``epoch``; Lightning's: ``Epoch 0/14``."""
        return super()._get_train_description(epoch)

    def _get_train_description(self, current_epoch: int) -> str:  # Lightning's hook
        return self.epoch_description(current_epoch)

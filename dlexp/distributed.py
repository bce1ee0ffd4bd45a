"""Multi-process training (``trainer=ddp``): one job, several processes, one run directory.

Lightning's own DDP launcher starts ranks > 0 by running the command line again. Under Hydra
that re-runs the whole application: in a multirun, rank 1 composes and runs the entire sweep
again (a second sweep dir); under the joblib launcher there is no command line to re-run.
dlexp launches its ranks > 0 itself instead: the job's rank 0 has written the job's resolved
config to ``<run dir>/config.yaml`` before training, and starts
``python -m dlexp.ddp_worker <run dir>`` once per extra local device, with the environment
Lightning's DDP expects (``MASTER_ADDR/PORT``, ``WORLD_SIZE``, ``NODE_RANK``, ``LOCAL_RANK``).
Workers never parse a command line or compose a config, so a job of a sweep stays one job,
whatever the launcher; only global rank 0 writes files (see :mod:`dlexp.run`).

When a cluster starts the processes itself (SLURM tasks, ``torchrun``), Lightning detects it
and nothing is launched here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.accelerators import CPUAccelerator

from dlexp.compat.lightning import LauncherDDPStrategy, ScriptLauncher
from dlexp.config.trainer import FREE_GPU

# Environment variables Lightning's DDP launch sets in the launching process.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
RESUME_ARG = "--checkpoint"
# The strategy names that get dlexp's launcher, with the DDPStrategy arguments they stand for.
DDP_STRATEGIES: dict[str, dict[str, Any]] = {
    "ddp": {},
    "ddp_find_unused_parameters_true": {"find_unused_parameters": True},
}


class JobLauncher(ScriptLauncher):
    """Starts ranks > 0 of this node as ``python -m dlexp.ddp_worker <run dir>``."""

    def __init__(self, *args: Any, run_dir: Path, checkpoint: Path | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_dir = run_dir
        self.checkpoint = checkpoint

    def worker_command(self) -> list[str]:
        """The command of a worker process (its local rank comes in ``LOCAL_RANK``)."""
        command = [sys.executable, "-m", "dlexp.ddp_worker", str(self.run_dir)]
        return command + ([RESUME_ARG, str(self.checkpoint)] if self.checkpoint else [])

    def start_children(self) -> None:
        self.check_can_spawn_children()
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        for local_rank in range(1, self.num_processes):
            child_env = dict(os.environ, LOCAL_RANK=str(local_rank))
            if os.environ.get("PL_GLOBAL_SEED") is None:
                child_env.pop("PL_GLOBAL_SEED", None)
            self.procs.append(subprocess.Popen(self.worker_command(), env=child_env))

    def reap(self, timeout: float) -> None:
        """Wait for the workers to end; kill those still running after ``timeout`` seconds.

        Lightning's observer thread watches the same list and kills this process when a worker
        fails; emptying the list first keeps it from reacting to the workers stopped here.
        """
        procs = list(self.procs)
        self.procs.clear()
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class JobDDPStrategy(LauncherDDPStrategy):
    """Lightning's DDP with :class:`JobLauncher` in place of re-running the command line."""

    def __init__(self, *, run_dir: Path, checkpoint: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir
        self.checkpoint = checkpoint

    def make_launcher(self) -> JobLauncher:
        assert self.cluster_environment is not None
        return JobLauncher(
            self.cluster_environment,
            self.num_processes,
            self.num_nodes,
            run_dir=self.run_dir,
            checkpoint=self.checkpoint,
        )


def strategy_for(name: Any, run_dir: Path, checkpoint: Path | None) -> Any:
    """``trainer.strategy`` as the Trainer gets it: DDP names become :class:`JobDDPStrategy`."""
    if isinstance(name, str) and name in DDP_STRATEGIES:
        return JobDDPStrategy(run_dir=run_dir, checkpoint=checkpoint, **DDP_STRATEGIES[name])
    return name


@contextmanager
def job_scope(trainer, reap_timeout: float = 120.0) -> Iterator[None]:
    """Everything one job's distributed training leaves in this process, undone at its end.

    The workers are waited for (and killed if they hang), the process group is destroyed and
    the launch's environment variables are restored, so the next job of a sweep in this
    process launches its own workers on a fresh port. A job on the CPU hides the GPUs while
    it runs (``CUDA_VISIBLE_DEVICES=""``), which keeps CUDA checks out of each step.
    """
    saved_env = {key: os.environ.get(key) for key in (*DDP_ENV, "CUDA_VISIBLE_DEVICES")}
    threads = torch.get_num_threads()
    if isinstance(trainer.accelerator, CPUAccelerator) and not torch.cuda.is_initialized():
        # A CPU job sees no GPU. Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so every
        # torch.cuda.is_available() (torch's Adam asks at each step) loads NVML anew: about
        # 0.2 ms per step on a machine without a GPU. CUDA is not initialized: nothing else
        # in this process depends on it.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        launcher = getattr(trainer.strategy, "launcher", None)
        if isinstance(launcher, JobLauncher):
            launcher.reap(reap_timeout)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)


# -- one GPU per process, for sweeps running jobs in parallel ----------------------------------

_claimed: list[Any] = []  # the lock file this process holds (kept until it exits)


def claim_free_gpu(lock_dir: Path | None = None) -> list[int]:
    """``[k]`` for a GPU that no other dlexp process of this user holds; kept by this process.

    Parallel launchers (joblib: one worker process per GPU) run each job in a process that
    claims one GPU, with a lock file per GPU, for the process's lifetime; later jobs in the
    same process reuse it. With more processes than GPUs, GPUs are shared (a warning says so).
    """
    import fcntl
    import logging
    import tempfile

    if _claimed:
        return [_claimed[0][0]]
    count = torch.cuda.device_count()
    if count == 0:
        from dlexp.errors import ConfigError

        raise ConfigError("trainer.devices", FREE_GPU, "needs a CUDA GPU (none is visible)")
    lock_dir = lock_dir or Path(tempfile.gettempdir()) / f"dlexp-gpus-{os.getuid()}"
    lock_dir.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        handle = open(lock_dir / f"gpu{k}.lock", "w")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _claimed.append((k, handle))
        return [k]
    k = os.getpid() % count
    logging.getLogger(__name__).warning("all %d GPUs are held by other jobs; sharing %d", count, k)
    return [k]

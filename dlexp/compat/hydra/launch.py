"""The configs of a sweep's jobs, as Hydra's basic launcher composes them, composed once.

Hydra's BasicLauncher composes every job from scratch (``load_sweep_config``: the defaults
list, every YAML file, the overrides), about 0.15 s a job. A job whose overrides differ
from an earlier job's only in values (``seed=1`` after ``seed=0``, the same options) gets
that job's config with its values applied, as composition applies them, and the ``hydra`` fields
that composition derives from a job's overrides (``overrides.task``,
``job.override_dirname``) set likewise; any other job is composed. Private Hydra APIs:
``ConfigLoaderImpl.load_sweep_config`` semantics and ``get_overrides_dirname``.
"""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from dlexp.compat.hydra import apply_value_overrides, parse_overrides, value_overrides_only


class JobConfigs:
    """``configs(overrides)``: the config Hydra's ``load_sweep_config(master, overrides)``
    gives; composed for the first job of each choice of options, derived for the others."""

    def __init__(self, config_loader: Any, master: DictConfig) -> None:
        self.loader, self.master = config_loader, master
        # per choice of options: a job's parsed overrides and its config, as composed
        self._composed: dict[tuple, tuple[list[Any], DictConfig]] = {}

    def __call__(self, overrides: list[str]) -> DictConfig:
        parsed = parse_overrides(overrides, self.loader)
        options = tuple(
            (o.key_or_group, None if value_overrides_only([o], self.loader) else o.input_line)
            for o in parsed
        )
        if options in self._composed:
            return self._derived(parsed, *self._composed[options])
        config = self.loader.load_sweep_config(self.master, list(overrides))
        self._composed[options] = (parsed, copy.deepcopy(config))  # before it is numbered
        return config

    def _derived(self, parsed: list[Any], first: list[Any], template: DictConfig) -> DictConfig:
        """``template`` (composed for the overrides ``first``) with ``parsed``'s values."""
        changed = [o for o, f in zip(parsed, first, strict=True) if o.input_line != f.input_line]
        config = copy.deepcopy(template)
        apply_value_overrides(changed, config)
        task = [o for o in parsed if not o.is_hydra_override()]
        with open_dict(config):
            config.hydra.overrides.task = [o.input_line for o in task]
            config.hydra.job.override_dirname = _overrides_dirname(task, config)
        OmegaConf.copy_cache(from_config=self.master, to_config=config)
        return config


def _overrides_dirname(overrides: list[Any], config: DictConfig) -> str:
    from hydra._internal.config_loader_impl import get_overrides_dirname

    spec = config.hydra.job.config.override_dirname
    return get_overrides_dirname(
        overrides=overrides,
        exclude_keys=list(spec.exclude_keys),
        item_sep=spec.item_sep,
        kv_sep=spec.kv_sep,
    )

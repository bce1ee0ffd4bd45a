"""dlexp's configuration: the typed schema of every config group, checked without torch.

``dlexp/conf`` holds the YAML options (selections and the values that differ from the
schemas); each group's schema lives in ``dlexp/config/<group>.py``; :func:`to_config`
builds the one typed :class:`Config` that the training path receives.
"""

from dlexp.config.root import (
    CONF_DIR,
    Config,
    LossConfig,
    RegularizationConfig,
    TestConfig,
    current_run_id,
    flat_config,
    new_run_id,
    register_configs,
    to_config,
    to_dictconfig,
    to_yaml,
)

__all__ = [
    "CONF_DIR",
    "Config",
    "LossConfig",
    "RegularizationConfig",
    "TestConfig",
    "current_run_id",
    "flat_config",
    "new_run_id",
    "register_configs",
    "to_config",
    "to_dictconfig",
    "to_yaml",
]

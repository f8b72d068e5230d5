"""The one experiment config: a pure, typed schema (``schema.py`` and its sections) validated at load, shared by the
CLI, YAML files and Tune. It reads config files, never the dataset: ``train/prepare.py`` is the one step that does
(and synthesises it where asked)."""

from .files import read_config, validate_config
from .paths import PATH_KEYS, absolute_paths, check_named_files, missing_files
from .schema import Config
from .search import ParameterSpace, SchedulerConfig, SearchConfig
from .sections import (
    DataConfig,
    FidConfig,
    GanConfig,
    LrScheduleConfig,
    ModelConfig,
    ResourcesConfig,
    Section,
    SynthesizeConfig,
    TrackingConfig,
    TrainConfig,
)
from .tree import (
    ConfigError,
    apply_overrides,
    describe_validation_error,
    flatten,
    get_dotted,
    set_dotted,
    validation_error_lines,
)

__all__ = [
    "Config", "ConfigError", "DataConfig", "FidConfig", "GanConfig", "LrScheduleConfig", "ModelConfig",
    "ParameterSpace", "ResourcesConfig", "SchedulerConfig", "SearchConfig", "Section", "SynthesizeConfig",
    "PATH_KEYS", "TrackingConfig", "TrainConfig", "absolute_paths", "apply_overrides", "check_named_files",
    "describe_validation_error", "flatten", "get_dotted", "missing_files", "read_config", "set_dotted",
    "validate_config", "validation_error_lines",
]

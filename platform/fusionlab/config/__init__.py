"""The one experiment config: a pure, typed schema (``schema.py`` and its sections) validated at load, shared by the
CLI, YAML files and Tune; ``prepare`` is the one step that reads the dataset (and synthesises it where asked)."""

from .files import load_config, parse_config, validate_config
from .paths import PATH_KEYS, absolute_paths, check_named_files, missing_files
from .prepare import check_batch_fits, check_task, prepare, synthesize
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
    "PATH_KEYS", "TrackingConfig", "TrainConfig", "absolute_paths", "apply_overrides", "check_batch_fits",
    "check_named_files", "check_task", "describe_validation_error", "flatten", "get_dotted", "load_config",
    "missing_files", "parse_config", "prepare", "set_dotted", "synthesize", "validate_config",
    "validation_error_lines",
]

"""The files and directories a config names: made absolute where the config is read, checked on the driver before
anything starts.

Ray Train V2 runs each worker in a working directory of its own, so a relative path that an in-process run
(``--local``) finds is not found by a worker: every path-valued key (``PATH_KEYS``) becomes absolute when a config or
a grid is read, after its ``--set`` overrides. A file that is not there would fail every worker minutes later (after
Ray started and the worker group was created), so ``check_named_files`` refuses it on the driver first, naming the
key, the path as written, where it was looked for and what belongs there; and where a sha256 is recorded for a file
(``model.pretrained_version``: torchvision's releases, by their hash) it checks the file against it there too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .tree import ConfigError, get_dotted, set_dotted

# Every config key that names a local path (a URI with "://" is left as it is), and what belongs there.
PATH_KEYS = {
    "data.path": "a dataset directory holding manifest.json (`fusionlab data synth` or `fusionlab data convert` "
                 "writes one)",
    "model.pretrained": "an ImageNet weights file, a PyTorch state dict: a torchvision ResNet's, an Xception's in "
                        "fusionlab's names or SegFormer's mit_bX.pth (`fusionlab models --backbone BACKBONE "
                        "--weight-keys` lists its keys)",
    "train.fid.weights": "pytorch-fid's InceptionV3 weights file, pt_inception-2015-12-05-6726825d.pth",
}


def is_remote(path: str) -> bool:
    """A URI (``s3://bucket/...``): no local file to check, nothing to make absolute."""
    return "://" in path


# Absolute path -> (the path as written, the places it was looked for): the config keeps only the absolute path the
# workers need, an error about it shows what the user wrote. Filled where this process read the config.
_looked_up: dict[str, tuple[str, tuple[str, ...]]] = {}


def absolute_paths(tree: dict[str, Any], config_dir: str | os.PathLike) -> dict[str, Any]:
    """``tree`` with every relative path of ``PATH_KEYS`` made absolute (``absolute_path``)."""
    for key in PATH_KEYS:
        found, value = get_dotted(tree, key)
        if found and isinstance(value, str) and value and not is_remote(value):
            tree = set_dotted(tree, key, absolute_path(value, config_dir))
    return tree


def absolute_path(written: str, config_dir: str | os.PathLike) -> str:
    """``~`` expanded; a relative path taken from the current directory, or from the config file's directory where
    it is there and not in the current one (a config beside its weights or dataset runs from anywhere)."""
    path = Path(written).expanduser()
    if path.is_absolute():
        return str(path)
    tried = tuple(dict.fromkeys(str((base / path).resolve()) for base in (Path.cwd(), Path(config_dir))))
    chosen = next((place for place in tried if Path(place).exists()), tried[0])
    _looked_up[chosen] = (written, tried)
    return chosen


def named_paths(config) -> dict[str, str]:
    """The local paths ``config`` names and a launch reads, by key: a dataset ``data.synthesize`` writes is not
    read yet, nor an FID file under ``train.fid.features: local``."""
    paths = {"data.path": None if config.data.synthesize else config.data.path,
             "model.pretrained": config.model.pretrained,
             "train.fid.weights": None if config.train.fid.features == "local" else config.train.fid.weights}
    return {key: path for key, path in paths.items() if path and not is_remote(path)}


def missing_files(*configs) -> list[str]:
    """One line per named path that is not there (each once, however many configs name it)."""
    lines: dict[str, None] = {}
    for config in configs:
        for key, path in named_paths(config).items():
            there = Path(path).is_dir() if key == "data.path" else Path(path).is_file()
            if not there:
                lines[describe_missing(key, path)] = None
    return list(lines)


def describe_missing(key: str, path: str) -> str:
    written, tried = _looked_up.get(path, (path, (path,)))
    where = tried[0] if len(tried) == 1 else (f"{tried[0]} (from the current directory), then {tried[1]} (from "
                                              f"the config file's)")
    return f"{key}: {written} is not there: looked for {where}; expected {PATH_KEYS[key]}"


def check_named_files(*configs) -> None:
    """On the driver, before any trial or worker starts: every file the ``configs`` name is there (a ConfigError
    listing each that is not) and matches the sha256 recorded for it (``check_recorded_sha256``)."""
    missing = missing_files(*configs)
    if missing:
        raise ConfigError("the config names files that are not there (every worker would fail reading them):\n  "
                          + "\n  ".join(missing))
    for config in configs:
        check_recorded_sha256(config)


def check_recorded_sha256(config) -> None:
    """``model.pretrained`` against the torchvision release ``model.pretrained_version`` names (its sha256 prefixes
    are recorded in ``models/pretrained_release.py``), exactly as the worker's loader will; the hash is computed once
    per unchanged file in this process, so a grid's cells sharing a file cost one read. ``any`` records no hash; a
    Mix Transformer's file is of no torchvision release (``models.pretrained.checks_release``)."""
    model = config.model
    if not model.pretrained or is_remote(model.pretrained) or model.pretrained_version == "any":
        return
    from fusionlab.models.pretrained import checks_release
    from fusionlab.models.pretrained_release import check_pretrained_release

    if checks_release(model.backbone):
        check_pretrained_release(model.pretrained, model.pretrained_version, model.backbone)

import os

import pytest

from fusionlab.data.synthetic import write_synthetic

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    """32/8/8 synthetic RGB-D scenes at 48x64: enough to see learning in a few CPU epochs."""
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic(out, train=32, val=8, test=8, size=(48, 64), seed=0)
    return out


def config_tree(data_path, **sections):
    tree = {
        "data": {"path": str(data_path), "modalities": ["rgb", "depth"], "crop": [48, 64],
                 "scale_range": [0.9, 1.1]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 3, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": "tests"},
    }
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values}
    return tree

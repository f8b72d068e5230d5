"""Config trees for the training tests."""


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

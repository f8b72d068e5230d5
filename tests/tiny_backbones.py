"""The CPU-sized backbones the registry-driven tests run models on: every backbone registered with ``tiny=True``
(``models/backbones/``), so a tiny backbone added there is tested with every model that runs on its family."""

from fusionlab.models import list_backbones, runs_on

PREFERRED = "resnet_mini"  # where a test wants one backbone per model: the tiny ResNet, where the model runs on it


def tiny_backbones(name: str, task: str = "segmentation") -> list[str]:
    """Every tiny backbone of ``task`` model ``name`` runs on."""
    return [backbone for backbone in list_backbones(task=task, tiny=True) if runs_on(name, backbone, task)]


def tiny_backbone(name: str, task: str = "segmentation") -> str:
    """One tiny backbone model ``name`` runs on: the tiny ResNet where it can, else the first by name."""
    backbones = tiny_backbones(name, task)
    assert backbones, f"{task} model {name!r} runs on no tiny backbone: register one with tiny=True"
    return PREFERRED if PREFERRED in backbones else backbones[0]


def tiny_pairs(task: str = "segmentation") -> list[tuple[str, str]]:
    """``(model, backbone)`` for every model of ``task`` and every tiny backbone it runs on."""
    from fusionlab.models import list_models

    return [(name, backbone) for name in list_models(task=task) for backbone in tiny_backbones(name, task)]

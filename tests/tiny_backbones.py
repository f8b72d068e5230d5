"""The CPU-sized backbone a registered model runs on in the registry-driven tests: the tiny ResNet for the CNN
fusion models, the tiny Mix Transformer for the token-fusion ones, the tiny U-Net for translation."""

from fusionlab.models import runs_on


def tiny_backbone(name: str, task: str = "segmentation") -> str:
    if task == "translation":
        return "unet_mini"
    return "resnet_mini" if runs_on(name, "resnet_mini") else "mit_mini"

"""ImageNet weight files as torchvision lays them out, with random values: what `model.pretrained` reads in tests."""

import torch


def torchvision_resnet_state(layers, width=64, counters=True) -> dict[str, torch.Tensor]:
    """A state dict laid out exactly as torchvision.models.resnet{50,101,152}().state_dict(), random values."""
    state = {}

    def batchnorm(prefix, channels):
        state[f"{prefix}.weight"] = torch.rand(channels) + 0.5
        state[f"{prefix}.bias"] = torch.randn(channels)
        state[f"{prefix}.running_mean"] = torch.randn(channels)
        state[f"{prefix}.running_var"] = torch.rand(channels) + 0.5
        if counters:
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(1234)

    state["conv1.weight"] = torch.randn(width, 3, 7, 7)
    batchnorm("bn1", width)
    inplanes = width
    for stage, count in enumerate(layers, start=1):
        planes = width * 2 ** (stage - 1)
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            state[f"{prefix}.conv1.weight"] = torch.randn(planes, inplanes, 1, 1)
            batchnorm(f"{prefix}.bn1", planes)
            state[f"{prefix}.conv2.weight"] = torch.randn(planes, planes, 3, 3)
            batchnorm(f"{prefix}.bn2", planes)
            state[f"{prefix}.conv3.weight"] = torch.randn(planes * 4, planes, 1, 1)
            batchnorm(f"{prefix}.bn3", planes * 4)
            if index == 0:
                state[f"{prefix}.downsample.0.weight"] = torch.randn(planes * 4, inplanes, 1, 1)
                batchnorm(f"{prefix}.downsample.1", planes * 4)
            inplanes = planes * 4
    state["fc.weight"] = torch.randn(1000, inplanes)
    state["fc.bias"] = torch.randn(1000)
    return state

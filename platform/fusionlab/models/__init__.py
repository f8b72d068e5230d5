"""Multimodal fusion models. Imports torch only: no Ray, no MLflow."""

from . import backbones as _backbones  # noqa: F401  (registers every backbone family and backbone)
from . import gemini_fusion as _gemini_fusion  # noqa: F401  (registers geminifusion)
from . import translation_zoo as _translation_zoo  # noqa: F401  (registers the translation models)
from . import zoo as _zoo  # noqa: F401  (registers the segmentation models)
from .backbone_registry import (
    BACKBONES,
    TRANSLATION_BACKBONES,
    BackboneFamily,
    backbone_family,
    get_backbone,
    list_backbones,
    register_backbone,
    register_family,
)
from .discriminator import PatchDiscriminator, build_discriminator, conditional_input
from .fusion import FusionModel, FusionOutput
from .modal import (
    ModalBatchNorm2d,
    ModalInstanceNorm2d,
    SharedConv2d,
    SharedConvTranspose2d,
    set_batchnorm_implementation,
    set_modality_loop,
)
from .pretrained import PretrainedWeightsError, load_imagenet_resnet, load_imagenet_weights
from .registry import TASKS, build, list_models, min_modalities, register_model, runs_on
from .sparsity import exchange_statistics, l1_penalty, overall_exchanged_fraction
from .summary import count_parameters, summarize
from .unet import UNetSpec, get_translation_backbone

__all__ = [
    "BACKBONES", "TASKS", "TRANSLATION_BACKBONES", "BackboneFamily", "FusionModel", "FusionOutput", "ModalBatchNorm2d",
    "ModalInstanceNorm2d", "PatchDiscriminator", "PretrainedWeightsError", "SharedConv2d", "SharedConvTranspose2d",
    "UNetSpec", "backbone_family", "build", "build_discriminator", "conditional_input", "count_parameters",
    "exchange_statistics", "get_backbone", "get_translation_backbone", "l1_penalty", "list_backbones", "list_models",
    "load_imagenet_resnet", "load_imagenet_weights", "min_modalities", "overall_exchanged_fraction",
    "register_backbone", "register_family", "register_model", "runs_on", "set_batchnorm_implementation",
    "set_modality_loop", "summarize",
]

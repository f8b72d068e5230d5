"""Each registered model's own parameters, with their defaults, written once: the config's ``model.params``.

A params class is a frozen dataclass per model family and task. Its fields are the config keys (``key`` in a field's
metadata where the key is no Python name: ``lambda``), their types and bounds (``ge``/``gt``/``le`` in the metadata)
are what the config validates ``model.params`` against; ``check`` is what depends on the modalities, and
``constructor_kwargs`` turns the parameters into the registered constructor's keyword arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .asym import REFERENCE_SHIFT_OFFSETS, REFERENCE_SHUFFLE_GROUPS

RcuResidual = Literal["post_activation", "pre_activation"]
# "loss": lambda * sum |gamma| added to the loss (the references, with SGD); "proximal": the same penalty applied as a
# soft-threshold after each optimizer step (what makes it bite under Adam; see sparsity.l1_proximal_step_).
Sparsity = Literal["loss", "proximal"]
# "per_output": lambda * sum |gamma| added to each output's loss (M branches + the ensemble), as the segmentation
# references; "once": added once. The effective pressure is lambda * (M + 1) or lambda.
Penalty = Literal["per_output", "once"]
# TokenFusion's ensemble weights: softmax(alpha) with alpha left out of the optimiser ("fixed", the reference: the
# branches' mean) or trained ("learned", as CEN's).
Ensemble = Literal["fixed", "learned"]


def check_portion(portion: float | None, num_modalities: int, name: str = "portion") -> float:
    """THE portion check: 0 < p <= 1/M, so the modalities' penalised (or randomly exchanged) blocks stay disjoint;
    returns p (None: 1/M). ``name`` is the key in the message."""
    if portion is None:
        return 1.0 / num_modalities
    if not 0.0 < portion <= 1.0 / num_modalities + 1e-9:
        raise ValueError(f"{name} must be in (0, 1/M] = (0, {1 / num_modalities:.4g}] for {num_modalities} "
                         f"modalities, so the modalities' blocks stay disjoint, got {portion}")
    return portion


@dataclass(frozen=True)
class ModelParams:
    """A model without parameters of its own."""

    def check(self, modalities: Sequence[str]) -> None:
        """Refuse values that do not fit these modalities (``ValueError`` whose message starts with the key)."""

    def constructor_kwargs(self, num_modalities: int) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def config_keys(cls) -> dict[str, str]:
        """Config key (``model.params.<key>``) -> field name."""
        return {f.metadata.get("key", f.name): f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> ModelParams:
        """An instance from config keys (already validated by the config; unknown keys are refused here too)."""
        keys = cls.config_keys()
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; expected some of {sorted(keys)}")
        return cls(**{keys[key]: value for key, value in values.items()})

    def to_config(self) -> dict[str, Any]:
        return {key: getattr(self, name) for key, name in self.config_keys().items()}


@dataclass(frozen=True)
class TranslationParams(ModelParams):
    """The translation models without parameters (concat, average, attention)."""


@dataclass(frozen=True)
class SegmenterParams(ModelParams):
    """The RefineNet segmenters. ``rcu_residual``: the residual conv unit adds back relu(x) (the references'
    in-place ReLU) or x (Light-Weight RefineNet as published)."""

    rcu_residual: RcuResidual = "pre_activation"


def _check_modality(modality: str | None, modalities: Sequence[str]) -> None:
    if modality is not None and modality not in modalities:
        raise ValueError(f"modality {modality!r} is not among the input modalities {list(modalities)}")


@dataclass(frozen=True)
class UnimodalParams(SegmenterParams):
    """One modality (default: the first) through the segmenter."""

    modality: str | None = None

    def check(self, modalities: Sequence[str]) -> None:
        _check_modality(self.modality, modalities)


@dataclass(frozen=True)
class TranslationUnimodalParams(TranslationParams):
    """The pix2pix generator on one modality (default: the first)."""

    modality: str | None = None

    def check(self, modalities: Sequence[str]) -> None:
        _check_modality(self.modality, modalities)


@dataclass(frozen=True)
class _CENFields(ModelParams):
    """CEN's parameters; ``lambda`` None is the reference's value (``REFERENCE_LAMBDA`` with its penalty form),
    converted to ``penalty`` so the effective pressure is the same."""

    REFERENCE_LAMBDA: ClassVar[float]
    REFERENCE_PENALTY: ClassVar[str]

    lambda_: float | None = field(default=None, metadata={"key": "lambda", "ge": 0})  # L1 weight on the gammas
    threshold: float = field(default=2e-2, metadata={"ge": 0})  # exchange channels whose |gamma| < threshold
    portion: float | None = field(default=None, metadata={"gt": 0, "le": 1})  # share of each norm penalised; 1/M
    sparsity: Sparsity = "loss"
    penalty: Penalty = "once"

    def check(self, modalities: Sequence[str]) -> None:
        check_portion(self.portion, len(modalities))

    def resolved_lambda(self, num_modalities: int) -> float:
        """``lambda``, or the reference's in this ``penalty`` form (6e-4, not 0.0006000000000000001)."""
        if self.lambda_ is not None:
            return self.lambda_
        reference = self.REFERENCE_LAMBDA * _outputs(self.REFERENCE_PENALTY, num_modalities)
        return round(reference / _outputs(self.penalty, num_modalities), 15)

    def effective_lambda(self, num_modalities: int) -> float:
        """The weight the penalty really gets per step (the per-output form's lambda times its M + 1 terms)."""
        return self.resolved_lambda(num_modalities) * _outputs(self.penalty, num_modalities)

    def constructor_kwargs(self, num_modalities: int) -> dict[str, Any]:
        kwargs = super().constructor_kwargs(num_modalities)
        del kwargs["lambda_"], kwargs["penalty"]
        return {**kwargs, "l1_lambda": self.effective_lambda(num_modalities)}


def _outputs(penalty: str, num_modalities: int) -> int:
    return num_modalities + 1 if penalty == "per_output" else 1


@dataclass(frozen=True)
class CENParams(SegmenterParams, _CENFields):
    """Segmentation CEN (yikaiw/CEN: lambda 2e-4 added once per output, threshold 2e-2, portion 1/M)."""

    REFERENCE_LAMBDA: ClassVar[float] = 2e-4
    REFERENCE_PENALTY: ClassVar[str] = "per_output"


@dataclass(frozen=True)
class TranslationCENParams(_CENFields):
    """Translation CEN (yikaiw/CEN image2image_translation: ``--lamda 1e-3``, ``--insnorm-threshold 1e-2``, the L1
    term added once)."""

    REFERENCE_LAMBDA: ClassVar[float] = 1e-3
    REFERENCE_PENALTY: ClassVar[str] = "once"

    lambda_: float | None = field(default=1e-3, metadata={"key": "lambda", "ge": 0})
    threshold: float = field(default=1e-2, metadata={"ge": 0})


@dataclass(frozen=True)
class RandomExchangeParams(SegmenterParams):
    """CEN's ablation "is it the gamma criterion?": a fixed random ``fraction`` of each exchanging norm's channels
    per modality (disjoint across modalities; None: 1/M, the size of CEN's penalised blocks, which is what CEN
    exchanges once they have collapsed) drawn from ``seed``, exchanged whatever gamma does; no sparsity penalty. To
    match a CEN run, set ``fraction`` to its logged ``exchange/fraction``."""

    fraction: float | None = field(default=None, metadata={"gt": 0, "le": 1})
    seed: int = field(default=0, metadata={"ge": 0})

    def check(self, modalities: Sequence[str]) -> None:
        check_portion(self.fraction, len(modalities), name="fraction")


@dataclass(frozen=True)
class _AsymFields(ModelParams):
    """AsymFusion's shuffle groups G (a branch keeps (G-1)/G of its channels) and pixel-shift offsets (dy, dx)."""

    shuffle_groups: int = field(default=REFERENCE_SHUFFLE_GROUPS, metadata={"ge": 2})
    shift_offsets: tuple[tuple[int, int], ...] = REFERENCE_SHIFT_OFFSETS

    def check(self, modalities: Sequence[str]) -> None:
        if not self.shift_offsets:
            raise ValueError("shift_offsets must be a non-empty list of (dy, dx)")


@dataclass(frozen=True)
class AsymFusionParams(SegmenterParams, _AsymFields):
    """Segmentation AsymFusion (yikaiw/AsymFusion's groups and offsets)."""


@dataclass(frozen=True)
class TranslationAsymFusionParams(_AsymFields):
    """AsymFusion in the U-Net's normed down layers."""


@dataclass(frozen=True)
class TokenFusionParams(ModelParams):
    """TokenFusion on a Mix Transformer (yikaiw/TokenFusion semantic_segmentation: ``LAMDA = 1e-4`` weighing the sum of
    every keep score, added to the loss once; tokens scored below 0.02 exchanged)."""

    lambda_: float = field(default=1e-4, metadata={"key": "lambda", "ge": 0})
    threshold: float = field(default=2e-2, metadata={"ge": 0, "le": 1})
    ensemble: Ensemble = "learned"

    def constructor_kwargs(self, num_modalities: int) -> dict[str, Any]:
        return {"l1_lambda": self.lambda_, "threshold": self.threshold, "ensemble": self.ensemble}


@dataclass(frozen=True)
class GeminiFusionParams(ModelParams):
    """GeminiFusion on a Mix Transformer (JiaDingCN/GeminiFusion ``main.py``: ``--n_heads 8`` heads in each pixel's
    cross-modal attention; ``--dpr`` the stochastic depth, 0.4 by default and 0.35 in the README's MiT-B5 commands:
    ``drop_path`` None is that, per backbone). ``ensemble``: TokenFusion's alpha ensemble (the reference's
    ``WeTr`` leaves alpha out of its optimiser: ``fixed``, the branches' mean)."""

    heads: int = field(default=8, metadata={"ge": 1})
    drop_path: float | None = field(default=None, metadata={"ge": 0, "le": 1})
    ensemble: Ensemble = "learned"

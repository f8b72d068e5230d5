"""Training recipes: the references' behaviour, and fusionlab's where it does better, one switch apart.

A config's top-level ``recipe`` (``reference`` or ``fusionlab``) fills in every switch below that the config does not
set itself; a switch set explicitly always wins. ``recipe_label`` says afterwards which recipe a run really followed
(``custom`` with the keys that differ when switches were mixed), and is logged and shown in reports.

Each switch is a dotted config key; docs/training.md, "Where fusionlab differs", lists them with what they change.
"""

from __future__ import annotations

from typing import Any

from .params import param_fields, task_of, with_current_keys
from .sections import ModelConfig
from .tree import get_dotted, set_dotted

RECIPE_NAMES = ("reference", "fusionlab")
REQUIRED_SECTIONS = ("data",)

# The references' values (the code of github.com/yikaiw/CEN, github.com/yikaiw/AsymFusion) and fusionlab's, per switch.
SWITCHES: dict[str, dict[str, Any]] = {
    # Light-Weight RefineNet's residual conv unit: the references' in-place ReLU makes the residual relu(x).
    "model.params.rcu_residual": {"reference": "post_activation", "fusionlab": "pre_activation"},
    # CEN's L1 term: added once per output (M branches + the ensemble) as the references do, or once.
    "model.params.penalty": {"reference": "per_output", "fusionlab": "once"},
    # Segmentation scores (validation, test, the logged model): logits upsampled bicubically, as the references'
    # cv2.resize(INTER_CUBIC), or bilinearly.
    "model.eval_upsample": {"reference": "bicubic", "fusionlab": "bilinear"},
    # Which torchvision ImageNet file model.pretrained must be (the references trained from the v1 weights).
    "model.pretrained_version": {"reference": "imagenet1k_v1", "fusionlab": "any"},
    # After the random scale the shorter side is clamped to at least this many pixels (None: no clamp).
    "data.min_short_side": {"reference": 350, "fusionlab": None},
    # Interpolation of the random scale: RGB bicubic, depth and labels nearest (reference); images bilinear.
    "data.resize": {"reference": "reference", "fusionlab": "bilinear"},
    # An image smaller than the crop is padded evenly on every side (reference) or at the bottom and right.
    "data.pad": {"reference": "centre", "fusionlab": "bottom_right"},
    # The references train on the whole official train split, which fusionlab's converters split into train + val.
    "data.train_split": {"reference": ["train", "val"], "fusionlab": "train"},
    # The epoch whose model is kept: best on the test split every validation (reference), or best on val.
    "train.selection": {"reference": "best_test", "fusionlab": "best_val"},
    # At each stage of the learning-rate schedule the references build new optimisers (momentum, Adam's moments
    # start from zero); fusionlab keeps one optimiser through the stages.
    "train.restart_each_stage": {"reference": True, "fusionlab": False},
    # TokenFusion's ensemble: softmax(alpha) over the branches, alpha in no optimiser group of the reference (so the
    # ensemble stays the branches' mean), or learned as CEN's is.
    "model.params.ensemble": {"reference": "fixed", "fusionlab": "learned"},
    # fp32 everywhere (reference), or bf16 autocast on GPU.
    "train.amp": {"reference": "off", "fusionlab": "auto"},
    # Translation (pix2pix objective): one PatchGAN, shared by the branches, judging each branch's (own input,
    # output) pair, the ensemble left out of the adversarial loss (reference); or one discriminator on (all inputs,
    # image) that also judges the ensemble.
    "train.gan.discriminators": {"reference": "per_branch", "fusionlab": "shared"},
    # Translation: the generator scored in train mode, dropout on, as the reference does; or in eval mode.
    "train.gan.eval_dropout": {"reference": True, "fusionlab": False},
}


# Where the translation reference (yikaiw/CEN image2image_translation) differs from the segmentation one: it adds
# the L1 term once, resizes every domain bilinearly (PIL) to 286 before its 256 crop, and has no 350-px clamp.
TRANSLATION_REFERENCE: dict[str, Any] = {
    "model.params.penalty": "once",
    "data.resize": "bilinear",
    "data.min_short_side": None,
}
PARAMS_PREFIX = "model.params."


def switch_value(key: str, recipe: str, task: str) -> Any:
    """The value of switch ``key`` in ``recipe`` for ``task`` (segmentation or translation)."""
    if recipe == "reference" and task == "translation" and key in TRANSLATION_REFERENCE:
        return TRANSLATION_REFERENCE[key]
    return SWITCHES[key][recipe]


def apply_recipe(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with every switch it leaves unset filled in from its ``recipe`` (default ``fusionlab``)."""
    recipe = tree.get("recipe", "fusionlab")
    if recipe not in RECIPE_NAMES:
        return tree  # the schema rejects it with the expected names
    task = task_of(get_dotted(tree, "model.backbone")[1])
    takes = _model_param_keys(tree)
    for key in SWITCHES:
        present, _ = get_dotted(tree, key)
        if key.split(".")[0] in REQUIRED_SECTIONS and key.split(".")[0] not in tree:
            continue  # leave the schema's "required key is missing" to say so
        if key.startswith(PARAMS_PREFIX) and key.removeprefix(PARAMS_PREFIX) not in takes:
            continue  # a switch of a parameter this model does not have (a translation model's rcu_residual)
        if not present:
            tree = set_dotted(tree, key, switch_value(key, recipe, task))
    return tree


def _model_param_keys(tree: dict[str, Any]) -> set[str]:
    """The ``model.params`` keys the tree's model takes; none where the tree is not one the schema accepts."""
    model = tree.get("model", {})
    if not isinstance(model, dict) or not isinstance(model.get("params", {}), dict):
        return set()
    name = model.get("name", ModelConfig.model_fields["name"].default)
    if not isinstance(name, str):
        return set()  # the schema refuses it
    return param_fields(name, model.get("backbone")) or set()


def recipe_label(flat: dict[str, Any]) -> str:
    """``reference`` / ``fusionlab`` when every switch has that recipe's value, else ``custom (key=value, ...)``
    naming the switches that differ from the declared recipe. ``flat``: a config's dotted parameters."""
    declared = flat.get("recipe", "fusionlab")
    task = task_of(flat.get("model.backbone"))
    flat = with_current_keys(flat)  # runs logged before model.params: model.cen.penalty, model.rcu_residual
    differing = [f"{key}={flat.get(key)}" for key in SWITCHES
                 if key in flat and flat[key] != switch_value(key, declared, task)]
    workers = int(flat.get("resources.num_workers", 1))
    if workers > 1:  # the references train on one GPU: batch_size is their global batch
        batch = int(flat.get("train.batch_size", 0))
        differing.append(f"global batch {batch * workers} ({workers} workers x {batch})")
    smoke = flat.get("train.smoke_steps")
    if smoke not in (None, "None"):
        differing.append(f"smoke run ({smoke} steps per epoch)")
    return declared if not differing else f"custom: {declared} but " + ", ".join(differing)

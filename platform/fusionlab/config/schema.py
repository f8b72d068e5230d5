"""The one experiment config: typed, validated at load, shared by the CLI, YAML files and Tune.

Sections: ``data``, ``model``, ``train``, ``resources``, ``tracking`` (and ``search``, used by ``fusionlab tune``).
Unknown keys and bad values are errors that name the dotted key and what was expected. ``--set a.b=value`` overrides
any key; values are parsed as YAML (``1e-3``, ``true``, ``[1, 2]``). Types are strict: an integer or boolean field takes
only an integer or boolean (``true`` is not 1, ``3.0`` and ``"3"`` are not 3); numbers are finite (no NaN or inf).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError, model_validator

from .params import MOVED_KEYS
from .search import SearchConfig
from .sections import DataConfig, ModelConfig, ResourcesConfig, Section, TrackingConfig, TrainConfig
from .tree import flatten, set_dotted, validation_error_lines


class Config(Section):
    recipe: Literal["reference", "fusionlab"] = "fusionlab"  # fills every unset switch of config/recipes.py
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    search: SearchConfig | None = None  # read by `fusionlab tune`

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, tree: Any) -> Any:
        from .recipes import apply_recipe

        return apply_recipe(tree) if isinstance(tree, dict) else tree

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        from .params import task_of

        modalities = self.data.modalities
        if modalities is not None:
            if len(set(modalities)) != len(modalities) or not modalities:
                raise ValueError(f"data.modalities must be distinct names, got {modalities}")
            count = len(modalities)
            from fusionlab.models.registry import min_modalities

            try:  # what the model's registry entry declares (models/zoo.py, models/translation_zoo.py)
                needed = min_modalities(self.model.name, task_of(self.model.backbone))
            except ValueError:  # no model of the backbone's task: prepare's check_task names the pairing
                needed = 1
            if count < needed:
                raise ValueError(f"model {self.model.name} needs at least {needed} modalities, data.modalities is "
                                 f"{modalities}")
            try:
                if self.model.has_params_class:
                    self.model.model_params().check(modalities)
            except ValueError as error:
                raise ValueError(f"model.params.{error} (data.modalities is {modalities})") from None
            portion_space = self.search.space.get("model.params.portion") if self.search else None
            if portion_space is not None and (portion_space.high or max(portion_space.values or [0])) > 1 / count:
                raise ValueError(f"search.space.model.params.portion must stay within (0, 1/M] = "
                                 f"(0, {1 / count:.4g}] for {count} modalities")
        if self.model.multi_scale and task_of(self.model.backbone) == "translation":
            raise ValueError(f"model.eval_scales {self.model.eval_scales} / model.eval_flip {self.model.eval_flip}: "
                             f"multi-scale and flip scoring is for segmentation; a translation model is scored on "
                             f"its images as generated")
        train_splits = self.data.train_split if isinstance(self.data.train_split, list) else [self.data.train_split]
        selecting_on = {"best_val": self.data.val_split, "best_test": self.data.test_split}.get(self.train.selection)
        if self.train.selection == "best_test" and not self.data.test_split:
            raise ValueError("train.selection best_test needs data.test_split (the split it selects on)")
        if selecting_on in train_splits:
            raise ValueError(f"train.selection {self.train.selection} selects on split {selecting_on!r}, which "
                             f"data.train_split {self.data.train_split} trains on; with recipe reference the val "
                             f"split is trained on, so select with best_test (the references) or set "
                             f"data.train_split: train")
        if self.search is not None and self.train.selection == "best_test" and self.search.metric.startswith("val/"):
            raise ValueError(f"search.metric {self.search.metric} is not logged under train.selection best_test "
                             f"(its per-epoch evaluation is on the test split, as test/...); a search should "
                             f"select on val: set train.selection best_val and data.train_split train")
        if self.search is not None:
            known = flatten(self.model_dump(mode="json", by_alias=True))
            unknown = [key for key in self.search.space if key not in known]
            moved = [f"{key}: {MOVED_KEYS[key.split('.')[1]]}" for key in unknown
                     if key.startswith("model.") and key.split(".")[1] in MOVED_KEYS]
            if moved:
                raise ValueError("search.space keys that moved:\n    " + "\n    ".join(moved))
            if unknown:
                raise ValueError(f"search.space keys {unknown} are not config keys of model {self.model.name} "
                                 f"(e.g. {', '.join(self.search_examples())}, train.lr_encoder)")
            refused = self.refused_search_values()
            if refused:
                raise ValueError("search values a trial would be refused with (every trial would fail):\n    "
                                 + "\n    ".join(refused))
        return self

    def search_examples(self) -> list[str]:
        return [f"model.params.{key}" for key in self.model.params][:3] or ["model.params.<key>"]

    def refused_search_values(self) -> list[str]:
        """Each searched value (``ParameterSpace.probes``) set on this config as a trial sets it, and what the
        schema says when it refuses one."""
        base = set_dotted(self.model_dump(mode="json", by_alias=True), "search", None)
        refused = []
        for key, space in (self.search.space if self.search else {}).items():
            for which, value in space.probes():
                try:
                    Config.model_validate(set_dotted(base, key, value))
                except ValidationError as error:
                    reasons = "; ".join(line.strip() for line in validation_error_lines(error))
                    refused.append(f"search.space.{key}: {which} {value!r}: {reasons}")
        return refused

    def run_name(self) -> str:
        if self.tracking.run_name:
            return self.tracking.run_name
        data = Path(self.data.path).name
        modalities = "+".join(self.data.modalities) if self.data.modalities else "all"
        modality = self.model.params.get("modality")
        which = f"-{modality}" if modality else ""
        return f"{self.model.name}{which}-{self.model.backbone}-{data}-{modalities}-seed{self.train.seed}"

    def flat(self) -> dict[str, Any]:
        """Dotted parameters for tracking (``model.params.lambda``, ``train.epochs``, ...), with the CEN penalty's
        resolved and effective lambda when the modalities are known."""
        flat = flatten(self.model_dump(mode="json", by_alias=True))
        flat["train.global_batch_size"] = self.train.batch_size * self.resources.num_workers
        params = self.model.model_params() if self.model.has_params_class else None
        if self.data.modalities and hasattr(params, "effective_lambda"):
            count = len(self.data.modalities)
            flat["model.params.lambda"] = params.resolved_lambda(count)
            flat["model.params.effective_lambda"] = params.effective_lambda(count)
        return flat


"""MLflow tag keys live in tracking/tags.py: each name is distinct, namespaced, and the modules that read and write
them use the constants (no literal "fusionlab.*" / "mlflow.*" key left where tags.py now holds it)."""

import re
from pathlib import Path

from fusionlab.tracking import tags

PACKAGE = Path(tags.__file__).resolve().parents[1]
# Where a key is defined: tags.py, and data/verify.py (data/ may not import tracking/; tags.py re-exports it).
DEFINED_IN = {"tracking/tags.py", "data/verify.py"}
# The same strings used as something other than a tag: an Arrow schema's metadata key, the model file's format name.
NOT_TAGS = {("data/writer.py", "fusionlab.dataset"), ("models/model_files.py", "fusionlab.model")}
TAG_LITERAL = re.compile(r"[\"'](?:fusionlab|mlflow)\.[A-Za-z_.]+[\"']")


def all_keys() -> dict[str, str]:
    keys = {name: value for name, value in vars(tags).items() if name.endswith(("_TAG", "_PREFIX"))}
    keys.update({f"PromotionTags.{name}": value for name, value in vars(tags.PromotionTags).items()
                 if name.isupper()})
    return keys


def test_every_key_is_namespaced_and_distinct():
    keys = all_keys()
    assert len(keys) > 40
    assert all(value.startswith(("fusionlab.", "mlflow.")) for value in keys.values()), keys
    by_value: dict[str, list[str]] = {}
    for name, value in keys.items():
        by_value.setdefault(value, []).append(name)
    assert {value: names for value, names in by_value.items() if len(names) > 1} == {}


def test_promotion_keys_share_the_prefix():
    promotion = {name: value for name, value in all_keys().items() if name.startswith("PromotionTags.")}
    assert all(value.startswith(tags.PromotionTags.PREFIX) for value in promotion.values())
    assert len(promotion) > 10


def test_no_module_types_a_tag_key_tags_py_holds():
    keys = set(all_keys().values()) | {tags.VERIFIED_TAG}
    literals = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        found = [literal for literal in TAG_LITERAL.findall(path.read_text())
                 if literal.strip("'\"") in keys and (name, literal.strip("'\"")) not in NOT_TAGS]
        if found and name not in DEFINED_IN:
            literals[name] = found
    assert literals == {}
    assert len(list(PACKAGE.rglob("*.py"))) > 50  # the scan saw the package

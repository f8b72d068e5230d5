"""MLflow tag keys live in tracking/tags.py: each name is distinct, namespaced, and the modules that read and write
them use the constants (no literal "fusionlab.*" / "mlflow.*" key left where tags.py now holds it)."""

import re
from pathlib import Path

from fusionlab.tracking import tags

PACKAGE = Path(tags.__file__).resolve().parents[1]
# Modules that take their tag keys from tags.py (others still have literals: see the follow-ups).
USING_TAGS = ["tracking/lifecycle.py", "tracking/sweeps.py", "tracking/registry.py", "tracking/cells.py",
              "tracking/report.py", "tracking/report_rows.py", "tracking/report_table.py", "tracking/imports.py",
              "tune/grid.py", "tune/grid_runner.py", "tune/sweep.py"]
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


def test_modules_using_tags_have_no_literal_keys():
    literals = {path: TAG_LITERAL.findall((PACKAGE / path).read_text()) for path in USING_TAGS}
    assert {path: found for path, found in literals.items() if found} == {}

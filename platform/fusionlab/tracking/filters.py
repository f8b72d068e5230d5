"""MLflow search filters with their values quoted: a name with a quote in it (``it's``) is matched as itself, and no
name can change what a filter matches (``x' OR ...``).

MLflow's filter grammar (3.x: ``search_runs``, ``search_model_versions``, ``search_logged_models``) takes a string in
``'...'`` or ``"..."`` and has no escape sequence (``'it''s'`` is the text ``it''s``, a backslash is kept as it is):
so a value goes in single quotes where it holds no ``'``, else in double quotes where it holds no ``"``, and one that
holds both cannot be searched for (``fusionlab.names.display_name_problem`` refuses such names at load).
"""

from __future__ import annotations

from fusionlab.errors import FusionlabError


def quoted(value: str) -> str:
    """``value`` as a filter-string literal."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise FusionlabError(f"{value!r}: holds both ' and \", which no MLflow search filter can quote; give it a name "
                         f"with one kind of quote at most")


def tag_equals(tag: str, value: str) -> str:
    """``tags.`<tag>` = <value>``, the value quoted."""
    return f"tags.`{tag}` = {quoted(value)}"


def attribute_equals(attribute: str, value: str) -> str:
    """``<attribute> = <value>`` (``name``, ``source_run_id``, ``attributes.status``), the value quoted."""
    return f"{attribute} = {quoted(value)}"

"""The README's commands work, by the convention in the comment at its top:

- every ```bash block of README.md runs as it stands (bash -euo pipefail) from a temporary directory holding a link to
  experiments/, with this venv's bin first on PATH, and must exit 0;
- in every ```sh or ```console block of README.md and docs/*.md (shown, not run), each `fusionlab` command must parse
  with the CLI's own argparse parser, each repository file it names (experiments/..., cluster/..., bench/...) must
  exist, and each `make` target must be in the Makefile, so a renamed subcommand, flag or config fails here.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHOWN = ("sh", "console")
OPERATORS = {"&&", "||", ";", "|", "&"}
REPO_FILE = re.compile(r"^(experiments|cluster|bench)/[\w./-]+$")


def fenced_blocks(path: Path, languages: tuple[str, ...]) -> list[str]:
    return [match.group(2) for match in FENCE.finditer(path.read_text()) if match.group(1) in languages]


def command_lines(block: str, language: str) -> list[str]:
    """One string per command line: continuations joined, console prompts stripped, comment lines dropped."""
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.strip()
        if language == "console":
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def simple_commands(tokens: list[str]) -> list[list[str]]:
    """The line's commands split at shell operators; a quoted argument that is itself a fusionlab command (`ray exec
    CLUSTER 'fusionlab data convert ...'`) counts as one too."""
    commands, current = [], []
    for token in [*tokens, ";"]:
        if token in OPERATORS:
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    nested = [shlex.split(token, comments=True) for command in commands for token in command[1:]
              if token.startswith("fusionlab ")]
    return commands + [command for tokens in nested for command in simple_commands(tokens)]


def shown_commands(program: str) -> list[tuple[str, list[str]]]:
    """``(where, argv after the program)`` for every command of ``program`` in the shown blocks."""
    found = []
    for page in PAGES:
        for language in SHOWN:
            for block in fenced_blocks(page, (language,)):
                for line in command_lines(block, language):
                    tokens = shlex.split(line, comments=True)
                    for command in simple_commands(tokens):
                        for index, token in enumerate(command):
                            if Path(token).name == program:
                                found.append((f"{page.relative_to(REPO)}: {shlex.join(tokens)}", command[index + 1:]))
                                break
    return found


def test_the_readme_has_both_kinds_of_block():
    assert fenced_blocks(README, ("bash",)), "no ```bash block: nothing of the README is run"
    assert fenced_blocks(README, SHOWN)
    assert len(README.read_text().splitlines()) <= 250, "README.md is the front page: details go to docs/"


@pytest.mark.parametrize("block", [pytest.param(block, id=command_lines(block, "bash")[0])
                                   for block in fenced_blocks(README, ("bash",))])
def test_a_bash_block_runs(block, tmp_path):
    (tmp_path / "experiments").symlink_to(REPO / "experiments", target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"exit {result.returncode}\n{block}\n{output}"


@pytest.mark.parametrize("where, argv", [pytest.param(where, argv, id=where)
                                         for where, argv in shown_commands("fusionlab")])
def test_a_shown_fusionlab_command_parses(where, argv, monkeypatch):
    from fusionlab.cli import build_parser

    def refuse(parser, message):
        raise AssertionError(f"{where}\n{parser.prog}: {message}")

    monkeypatch.setattr(argparse.ArgumentParser, "error", refuse)
    try:
        build_parser().parse_args(argv)
    except SystemExit as stop:  # --help
        assert stop.code in (0, None), where
    missing = [token for token in argv if REPO_FILE.match(token) and not (REPO / token).exists()]
    assert not missing, f"{where}: no such file in the repository: {missing}"


def test_every_fusionlab_subcommand_is_shown_somewhere():
    from fusionlab.cli import build_parser

    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    shown = {argv[0] for _, argv in shown_commands("fusionlab") if argv}
    shown |= {word for block in fenced_blocks(README, ("bash",)) for word in re.findall(r"fusionlab (\S+)", block)}
    assert set(commands.choices) <= shown, f"not shown in README.md or docs/: {set(commands.choices) - shown}"


@pytest.mark.parametrize("where, argv", [pytest.param(where, argv, id=where) for where, argv in shown_commands("make")])
def test_a_shown_make_target_exists(where, argv):
    targets = set(re.findall(r"^([\w.-]+):", (REPO / "Makefile").read_text(), re.M))
    named = [token for token in argv if not token.startswith("-") and "=" not in token]
    assert set(named) <= targets, f"{where}: no such target in the Makefile: {set(named) - targets}"

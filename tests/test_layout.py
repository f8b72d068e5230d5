"""platform/ is a source root, never a package: it must not shadow the stdlib `platform` module."""

import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_platform_is_not_a_package():
    assert not (REPO / "platform" / "__init__.py").exists()
    assert callable(platform.python_version)  # the stdlib module, not our directory


def test_models_import_torch_only():
    import subprocess
    import sys

    code = ("import sys, fusionlab.models; "
            "print(sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

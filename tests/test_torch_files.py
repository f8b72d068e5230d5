"""fusionlab.torch_files: the one torch.load (weights_only=True), whose failures are one line that is never empty and
never advises weights_only=False."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import pytest
import torch

from fusionlab.torch_files import TorchFileError, load_weights_only

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "fusionlab"


class Payload:
    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return exec, (f"open({self.sentinel!r}, 'w').write('ran')",)


def saved(value, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def test_tensors_load(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"a": torch.ones(2)}, path)
    assert torch.equal(load_weights_only(path)["a"], torch.ones(2))


@pytest.mark.parametrize("case", ["empty", "text", "random", "zip-truncated", "legacy-truncated", "payload",
                                  "legacy-payload", "pickled-int", "directory", "missing"])
def test_every_failure_has_a_reason_without_the_hint(tmp_path, case):
    sentinel = tmp_path / "ran"
    contents = {"empty": b"", "text": b"hello\n", "random": bytes(range(1, 200)),
                "zip-truncated": saved({"a": torch.zeros(100)})[:100],
                "legacy-truncated": saved({"a": torch.zeros(100)}, legacy=True)[:60],
                "payload": saved(Payload(sentinel)), "legacy-payload": saved(Payload(sentinel), legacy=True),
                "pickled-int": pickle.dumps(3)}
    path = tmp_path / "file.pth.tar"
    if case == "directory":
        path.mkdir()
    elif case in contents:
        path.write_bytes(contents[case])
    with pytest.raises(TorchFileError) as raised:
        load_weights_only(path)
    reason = raised.value.reason
    assert reason.strip() and not reason.rstrip().endswith(":"), reason
    assert "\n" not in reason and "weights_only=False" not in str(raised.value)
    assert str(path) in str(raised.value)
    assert not sentinel.exists()
    assert pickle.loads(pickle.dumps(raised.value)).reason == reason


def test_no_other_module_calls_torch_load():
    calls = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
             if path.name != "torch_files.py" and re.search(r"\btorch\.load\(|\bfrom torch import load\b",
                                                              path.read_text())]
    assert calls == []

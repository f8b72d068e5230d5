"""bench/loader_throughput.py in-process at a tiny size: samples/s per worker count and the ratio to a step rate."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "loader_throughput.py"


def test_loader_reports_workers_and_the_ratio_to_the_step(capsys):
    spec = importlib.util.spec_from_file_location("loader_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["loader_throughput"] = module
    spec.loader.exec_module(module)
    result = module.main(["--samples", "4", "--size", "32x48", "--workers", "0,1", "--batch", "2", "--repeats", "1",
                          "--step-samples-per-s", "1", "--loader-only"])
    out = capsys.readouterr().out
    assert set(result["rates"]) == {0, 1} and all(rate > 0 for rate in result["rates"].values())
    assert result["workers_needed"] >= 1
    assert "CPU workers" in out and "loader / step" in out and "to keep up (loader >= 3x step" in out

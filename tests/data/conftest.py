import pytest
from tiny_data import make_manifest, make_samples

from fusionlab.data import DatasetWriter


@pytest.fixture
def tiny_dataset(tmp_path):
    """A small dataset on disk and the samples it holds: 10 train, 4 val."""
    samples = make_samples(14, split_of=lambda i: "train" if i < 10 else "val")
    out = tmp_path / "tiny"
    with DatasetWriter(out, make_manifest()) as writer:
        for sample in samples:
            writer.write(sample)
    return out, samples

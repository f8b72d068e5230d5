"""bench/ingest_memory.py's pieces that need no cluster: the smaps accounting (a file two processes map counted once,
private pages summed), the datasets it writes, and its targets."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest_memory.py"
MiB = 2**20


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ingest_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ingest_memory"] = module
    spec.loader.exec_module(module)
    return module


SMAPS = """\
55d0a0000000-55d0a0100000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Rss:                 600 kB
Pss:                 400 kB
Shared_Clean:          0 kB
Shared_Dirty:        400 kB
Private_Clean:         0 kB
Private_Dirty:       200 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000400000 r--s 00000000 08:01 1234                       /cache/split.arrow
Size:               4096 kB
Rss:                3000 kB
Pss:                2000 kB
Shared_Clean:       2000 kB
Shared_Dirty:          0 kB
Private_Clean:      1000 kB
Private_Dirty:         0 kB
7f0000400000-7f0000500000 r-xp 00001000 08:01 99                         /lib/libtorch cpu.so
Size:               1024 kB
Rss:                 512 kB
Pss:                 100 kB
Shared_Clean:        512 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:         0 kB
7f0000500000-7f0000501000 r--p 00002000 08:01 99                         /lib/libtorch cpu.so
Size:                  4 kB
Rss:                   4 kB
Pss:                   4 kB
Shared_Clean:          0 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:         4 kB
"""


def test_smaps_parsing(bench):
    pages = bench.parse_smaps(SMAPS)
    assert pages.private == (200 + 1000 + 4) * 1024
    assert pages.shared_anon == (400 - 200) * 1024  # Pss - Private of the heap: its shared pages, divided
    assert pages.shared_files == {("08:01", "1234"): 2000 * 1024, ("08:01", "99"): 512 * 1024}  # per file, summed
    assert pages.private_files == {("08:01", "1234"): 1000 * 1024, ("08:01", "99"): 4 * 1024}
    assert pages.paths[("08:01", "99")] == "/lib/libtorch cpu.so"


def test_a_shared_file_counts_once_per_node(bench):
    one, two = bench.parse_smaps(SMAPS), bench.parse_smaps(SMAPS.replace("2000 kB\nShared_Dirty:          0 kB\n"
                                                                         "Private_Clean:      1000",
                                                                         "2500 kB\nShared_Dirty:          0 kB\n"
                                                                         "Private_Clean:      1000"))
    memory = bench.node_memory([one, two])
    assert memory.private == 2 * one.private and memory.shared_anon == 2 * one.shared_anon
    assert memory.shared_files == (2500 + 512) * 1024  # each file's largest shared part, once
    assert memory.total == memory.private + memory.shared_anon + memory.shared_files
    assert memory.largest_files[0] == ("/cache/split.arrow", (2500 + 2 * 1000) * 1024)
    roles = bench.node_memory([one, two, one], roles=["train worker", "loader", "train worker"]).roles
    assert roles == {"train worker": (2, 2 * (one.private + one.shared_anon)),
                     "loader": (1, two.private + two.shared_anon)}


HOLDER = textwrap.dedent("""
    import mmap, sys
    with open(sys.argv[1], "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    total = sum(mapped[offset] for offset in range(0, len(mapped), 4096))  # every page resident
    private = bytearray(b"\\x01") * (int(sys.argv[2]) * 2**20)  # written: private pages
    print("ready", total, flush=True)
    sys.stdin.read()
""")


def test_two_processes_mapping_one_file(bench, tmp_path):
    shared = tmp_path / "split.arrow"
    shared.write_bytes(bytes(range(256)) * (16 * MiB // 256))
    processes = [subprocess.Popen([sys.executable, "-c", HOLDER, str(shared), str(private)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for private in (8, 32)]
    try:
        for process in processes:
            assert process.stdout.readline().startswith("ready")
        memory = bench.node_memory(bench.read_pages([process.pid for process in processes]), top=50)
        resident = dict(memory.largest_files)[str(shared)]
        assert 15 * MiB <= resident <= 16 * MiB + 64 * 1024  # mapped by both, counted once
        assert memory.private >= 40 * MiB  # both private allocations
        assert memory.total >= memory.private + 15 * MiB
    finally:
        for process in processes:
            process.stdin.close()
            process.wait(timeout=30)


def test_the_process_tree(bench):
    import os

    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        tree = bench.process_tree(os.getpid())
        assert tree[0] == os.getpid() and process.pid in tree
        roles = bench.process_roles(os.getpid())
        assert roles[os.getpid()] == "raylet" and roles[process.pid] == "other"  # a child of the root
        assert bench.sample_tree(os.getpid()).processes >= 2
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def test_the_datasets_have_the_right_sizes(bench, tmp_path):
    from fusionlab.data.reader import DatasetReader

    sun = bench.quick_shape(bench.DATASETS["sunrgbd"])
    manifest = bench.write_dataset(tmp_path / "sun", bench.DatasetShape(sun.name, sun.sizes, 5, sun.crop))
    assert manifest.image_size is None  # varying sizes: data.crop is required
    tables = [table for _, table in DatasetReader(tmp_path / "sun").read_shards("train")]
    sizes = [(row["height"], row["width"]) for table in tables for row in table.select(["height", "width"])
             .to_pylist()]
    assert sizes == [sun.sizes[index % 3] for index in range(5)] and len(set(sizes)) == 3
    assert sum(shard.rows for shard in manifest.shards("val")) == bench.VAL_ROWS
    ids = [row["sample_id"] for table in tables for row in table.select(["sample_id"]).to_pylist()]
    assert len(set(ids)) == 5

    nyu = bench.quick_shape(bench.DATASETS["nyudv2"])
    assert bench.write_dataset(tmp_path / "nyu", nyu).image_size == nyu.sizes[0]
    assert bench.DATASETS["nyudv2"].sizes == ((480, 640),) and bench.DATASETS["cityscapes"].sizes == ((1024, 2048),)
    assert bench.encoded_row_bytes((480, 640)) == 480 * 640 * 6


def test_the_memory_target(bench):
    split, constant = 400 * MiB, 300 * MiB
    once = {workers: split + constant * workers for workers in (1, 2, 4)}
    each = {workers: (split + constant) * workers for workers in (1, 2, 4)}
    target = bench.memory_target(split, once, each)
    assert target["pass"] and target["per_worker_constant"] == pytest.approx(constant)
    assert target["intercept"] == pytest.approx(split) and target["baseline_slope"] == pytest.approx(split + constant)
    copied = bench.memory_target(split, each, each)  # a copy per worker: the slope carries the split
    assert not copied["pass"] and not copied["checks"]["no copy per worker"]
    overhead = {workers: 200 * MiB + (split + constant) * workers for workers in (1, 2, 4)}  # a fixed cost too
    assert bench.memory_target(split, {w: 200 * MiB + split + constant * w for w in (1, 2, 4)}, overhead)["pass"]
    twice = bench.memory_target(split, {w: 2 * split + constant * w for w in (1, 2, 4)}, each)  # held twice
    assert not twice["pass"] and not twice["checks"]["split held once"]
    alone = bench.memory_target(split, once)  # no baseline: against the split alone
    assert alone["pass"] and list(alone["checks"]) == ["split held once"]
    assert not bench.memory_target(split, {w: 2 * split + constant * w for w in (1, 2, 4)})["pass"]


def test_the_epoch_target(bench):
    assert bench.epoch_target(2.1, 2.0)["pass"]
    assert not bench.epoch_target(2.3, 2.0)["pass"]
    assert bench.epoch_target(3.0, 2.0)["ratio"] == pytest.approx(1.5)


def test_the_arguments(bench):
    args = bench.parse_args(["--quick", "--datasets", "nyudv2,cityscapes", "--rows", "cityscapes=4",
                             "--workers", "1,2"])
    assert [shape.rows for shape in args.shapes] == [8, 4] and args.worker_counts == [1, 2]
    assert args.shapes[1].sizes == ((128, 256),) and args.mode_list == [bench.NODE_COPY, bench.PER_WORKER]
    with pytest.raises(SystemExit):
        bench.parse_args(["--datasets", "kitti"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--workers", "8"])

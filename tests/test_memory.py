"""gemel/memory.py: handing back memory the process no longer uses, without changing anything it computes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from gemel.memory import GPU_LIBRARIES, droppable_mappings

SMAPS = """\
7f0000000000-7f0000100000 r--p 00000000 fd:01 11 /venv/lib/nvidia/cublas/lib/libcublasLt.so.13
Rss:                 400 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r-xp 00100000 fd:01 11 /venv/lib/nvidia/cublas/lib/libcublasLt.so.13
Rss:                1024 kB
Anonymous:             0 kB
7f0000200000-7f0000210000 r--p 00200000 fd:01 11 /venv/lib/nvidia/cublas/lib/libcublasLt.so.13
Rss:                  64 kB
Anonymous:            64 kB
7f0000210000-7f0000220000 rw-p 00210000 fd:01 11 /venv/lib/nvidia/cublas/lib/libcublasLt.so.13
Rss:                  64 kB
Anonymous:            12 kB
7f0000300000-7f0000400000 r-xp 00000000 fd:01 12 /venv/lib/torch/lib/libtorch_cpu.so
Rss:                 900 kB
Anonymous:             0 kB
7f0000400000-7f0000500000 r-xp 00000000 fd:01 13 /venv/lib/triton/_C/libtriton.so
Rss:                 700 kB
Anonymous:             0 kB
7f0000500000-7f0000600000 rw-p 00000000 00:00 0
Rss:                 100 kB
Anonymous:           100 kB
7f0000600000-7f0000700000 r-xp 00000000 fd:01 14 /usr/lib/x86_64-linux-gnu/libcurl.so.4
Rss:                 100 kB
Anonymous:             0 kB
"""


def test_only_unmodified_read_only_gpu_library_mappings_are_droppable():
    spans = droppable_mappings(SMAPS)
    # cuBLASLt's read-only and code mappings; triton's code. Not its relocated read-only data (private pages),
    # not its writable data, not torch's CPU library, not anonymous memory, not a library that only shares a
    # prefix with CUDA's (libcurl).
    assert spans == [(0x7F0000000000, 0x7F0000100000), (0x7F0000100000, 0x7F0000200000),
                     (0x7F0000400000, 0x7F0000500000)]


@pytest.mark.parametrize("name,gpu", [("libcublasLt.so.13", True), ("libnvJitLink.so.13", True),
                                      ("libtorch_cuda.so", True), ("libc10_cuda.so", True),
                                      ("libtriton.so", True), ("libcudnn_ops.so.9", True),
                                      ("libtorch_cpu.so", False), ("libcurl.so.4", False), ("libc.so.6", False)])
def test_gpu_library_names(name, gpu):
    assert bool(GPU_LIBRARIES.match(name)) is gpu


@pytest.mark.slow  # a fresh process that imports torch
def test_release_drops_cuda_pages_and_torch_still_computes_the_same():
    """In a fresh process (this one's pages are the test run's business): on a CPU-only machine with the CUDA
    build of torch, releasing lowers RSS, and a model computes the same numbers afterwards."""
    code = textwrap.dedent("""
        import json, torch
        from gemel.memory import release_unused_gpu_libraries
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
        x = torch.randn(16, 64)
        before = net(x)
        released = release_unused_gpu_libraries()
        after = net(x)
        print(json.dumps({"released": released, "cuda": torch.cuda.is_available(),
                          "cuda_build": torch.version.cuda is not None, "same": bool(torch.equal(before, after))}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["same"]
    if result["cuda"]:
        assert result["released"] == 0  # a GPU machine keeps its libraries resident
    elif result["cuda_build"] and sys.platform.startswith("linux"):
        assert result["released"] > 20 * 2**20


def test_release_does_nothing_when_a_cuda_device_is_there(monkeypatch):
    import torch

    from gemel import memory

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(memory, "droppable_mappings", lambda *a, **k: pytest.fail("must not look for mappings"))
    assert memory.release_unused_gpu_libraries() == 0


def _rss_file_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS and madvise as on Linux")
def test_dropped_pages_leave_the_rss_and_written_values_stay(tmp_path):
    import numpy as np

    from gemel.memory import drop_pages

    path = tmp_path / "v.npy"
    out = np.lib.format.open_memmap(path, "w+", np.float16, (65_536, 512))  # 64 MB
    out[:] = np.arange(512, dtype=np.float16)
    out[7, 3] = 42
    out.flush()
    before = _rss_file_mb()
    assert drop_pages(out[1000:2000])  # a slice drops its whole mapping
    assert _rss_file_mb() < before - 48
    del out
    back = np.load(path, mmap_mode="r")
    assert back[7, 3] == 42 and back[65_535, 511] == 511  # nothing written was lost
    assert float(back.astype(np.float32).sum()) > 0 and _rss_file_mb() > before - 16  # read: resident again
    assert drop_pages(back) and _rss_file_mb() < before - 48


def test_drop_pages_keeps_copy_on_write_changes_and_ignores_plain_arrays(tmp_path):
    import numpy as np

    from gemel.memory import drop_pages

    np.save(tmp_path / "v.npy", np.zeros((1024, 8), np.float32))
    cow = np.load(tmp_path / "v.npy", mmap_mode="c")
    cow[5] = 1
    assert not drop_pages(cow) and cow[5, 0] == 1  # the change lives only in those private pages
    assert not drop_pages(np.ones(3)) and not drop_pages([1, 2])

"""Handing memory the process no longer uses back to the system.

glibc's malloc keeps freed heap for reuse instead of returning it: loading a linker frees ~40-80 MB of
temporary buffers (tokenising 10k KB names, building the pools, reading the weights) that would stay in the
serving process's RSS for ever. `trim` collects garbage and asks glibc to release free pages
(``malloc_trim(0)``); elsewhere (musl, macOS) it only collects garbage. It never changes a value the process
holds, so answers are unchanged.

The CUDA build of torch (the pinned one) maps its CUDA libraries at ``import torch`` even on a machine with
no GPU, and their start-up leaves ~200 MB of their pages in the process's RSS (cuBLASLt, nvJitLink, NVRTC,
triton, ...), pages no CPU-only process ever runs again. `release_unused_gpu_libraries` unmaps those pages
(``madvise(MADV_DONTNEED)`` on the libraries' read-only, unmodified mappings): the files stay mapped, so a
page needed after all is read back from the page cache; only the residency goes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import mmap
import re
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# the GPU libraries torch and triton load (basenames); their pages are never run without a CUDA device
GPU_LIBRARIES = re.compile(r"^lib(cublas|cudart|cudnn|cufft|cufile|curand|cusolver|cusparse|cupti|nvJitLink|nvrtc|"
                           r"nvToolsExt|nvshmem|nccl|torch_cuda|c10_cuda|caffe2_nvrtc|triton)[^/]*\.so")
MADV_DONTNEED = 4


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def trim() -> bool:
    """Collect garbage, then return malloc's free memory to the system; True when glibc released some."""
    gc.collect()
    return trim_heap()


def trim_heap() -> bool:
    """Only return malloc's free memory to the system (no garbage collection: a few ms, where `trim` costs
    ~0.4 s on a loaded linker); for loops that free large buffers every step, such as embedding in batches."""
    libc = _libc()
    release = getattr(libc, "malloc_trim", None) if libc is not None else None
    return bool(release(0)) if release is not None else False


def drop_pages(array: object) -> bool:
    """Drop the resident pages of a memory-mapped numpy array (``np.load(..., mmap_mode=...)``, ``open_memmap``
    or a slice of one) from this process's RSS; True when it did. The file stays mapped and its pages stay in
    the page cache (written pages included: a shared mapping's changes are the file's), so the next read costs
    a page-cache copy, not a disk read. Streaming a 1M-row KB through a mapping would otherwise leave every
    page it touched in the RSS: 768 MB per (1M, 384) float16 array. A copy-on-write mapping (mode "c", whose
    changes live only in those pages), anything else, or off Linux: a no-op."""
    m = getattr(array, "_mmap", None)
    if m is None or m.closed or getattr(array, "mode", "c") == "c" or not sys.platform.startswith("linux"):
        return False
    m.madvise(mmap.MADV_DONTNEED)
    return True


def droppable_mappings(smaps: str, names: re.Pattern = GPU_LIBRARIES) -> list[tuple[int, int]]:
    """(start, end) of the mappings in a ``/proc/<pid>/smaps`` text whose file's basename matches ``names``,
    that are not writable and hold no private (copy-on-write) page: unmapping their pages loses nothing, the
    file gives them back unchanged. Relocated read-only data (RELRO) holds private pages and is kept."""
    out, current = [], None
    for line in smaps.splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = fields[5] if len(fields) >= 6 else ""
            current = fields if "w" not in fields[1] and names.match(path.rsplit("/", 1)[-1]) else None
        elif current is not None and fields[:1] == ["Anonymous:"]:
            if fields[1] == "0":
                lo, hi = (int(x, 16) for x in current[0].split("-"))
                out.append((lo, hi))
            current = None
    return out


def release_unused_gpu_libraries() -> int:
    """Where torch sees no CUDA device, unmap the resident pages of the GPU libraries it loaded (see the module
    docstring); returns the bytes of RSS released (0 with a CUDA device, off Linux, or with a CPU-only torch)."""
    import torch

    smaps = Path("/proc/self/smaps")
    libc = _libc()
    if torch.cuda.is_available() or not smaps.exists() or libc is None or not hasattr(libc, "madvise"):
        return 0
    before = _rss_bytes()
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for lo, hi in droppable_mappings(smaps.read_text()):
        libc.madvise(lo, hi - lo, MADV_DONTNEED)
    released = max(0, before - _rss_bytes())
    log.debug("released %.0f MB of unused GPU library pages", released / 2**20)
    return released


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

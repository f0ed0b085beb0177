"""Numeric precision of the frozen LLM: which dtype a profile's ``llm.dtype`` means on this machine.

bfloat16 halves the weights and the KV cache, and keeps the answers (bench/precision.py: 1 of 40 changed
against float32, accuracy unchanged). Where the hardware multiplies bf16 natively (x86 CPUs with AVX512-BF16
or AMX-BF16, CUDA GPUs of compute capability >= 8) it is also faster; without those units torch emulates it
through float32 and a link gets ~3x *slower* (measured on a Skylake-SP Xeon). So ``"auto"`` picks bfloat16
only where the unit exists (``/proc/cpuinfo`` flags on Linux, ``torch.cuda.is_bf16_supported`` on CUDA) and
float32 elsewhere.

``"int8"`` is dynamic quantisation of every ``nn.Linear`` (``torch.ao.quantization.quantize_dynamic``: int8
weights, activations quantised per call), CPU only, inference only, opt-in. It does **not** keep the answers
of the offline default (23 of 40 changed, accuracy halved, bench/precision.py): for experiments only.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import torch

from gemel.config import PRECISIONS
from gemel.errors import GemelError

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmul units


class PrecisionError(GemelError):
    """A precision cannot run here (int8 on a GPU, an unknown name); the message says what to use."""


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor listed (none when the file cannot be read: not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return frozenset()


@functools.lru_cache(maxsize=None)
def _native_bf16_cpu() -> bool:
    return bool(set(BF16_CPU_FLAGS) & cpu_flags())


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 in hardware (not emulated through float32)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return kind == "cpu" and _native_bf16_cpu()


def resolve_precision(name: str, device: str | torch.device = "cpu") -> str:
    """The concrete precision a profile's ``llm.dtype`` means on ``device``: "auto" -> "bfloat16" where bf16
    is native, else "float32"; every other name is returned as is (after checking it can run there)."""
    if name not in PRECISIONS:
        raise PrecisionError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    if name == "int8" and torch.device(device).type != "cpu":
        raise PrecisionError("llm.dtype = 'int8' (dynamic quantisation) runs on the CPU only: use 'auto', "
                             "'bfloat16' or 'float16' on a GPU")
    if name == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return name


def resolve_dtype(name: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype the model's weights are loaded in (int8 loads float32, then quantises its Linears)."""
    precision = resolve_precision(name, device)
    return torch.float32 if precision == "int8" else getattr(torch, precision)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8 once, activations per call); the
    embedding table stays float32. Returns the model, changed in place."""
    from torch.ao.quantization import quantize_dynamic

    engines = torch.backends.quantized.supported_engines
    for engine in ("fbgemm", "x86", "onednn"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    with warnings.catch_warnings():  # torch 2.14 announces the move of torch.ao.quantization to torchao
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def describe(name: str, device: str | torch.device = "cpu") -> str:
    """``"auto -> bfloat16 (avx512_bf16)"``, ``"auto -> float32 (no native bf16)"`` or the name itself."""
    if name != "auto":
        return name
    precision = resolve_precision(name, device)
    if torch.device(device).type == "cuda":
        why = "GPU bf16" if precision == "bfloat16" else "GPU without bf16"
    else:
        found = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
        why = ", ".join(found) if found else "no native bf16: " + " / ".join(BF16_CPU_FLAGS) + " absent"
    return f"auto -> {precision} ({why})"

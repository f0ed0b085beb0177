"""What an accuracy bench ran on: the CPU, its cores and what the LLM's precision setting means there.

The offline profile's LLM runs in bfloat16 where the CPU multiplies it natively (``llm.dtype = "auto"``,
gemel/models/precision.py), and its log-probabilities differ between float32 and bfloat16, and between two CPUs'
bfloat16, by up to about one nat. Measured (docs/BENCHMARKS.md, "Machines"): the ranker's 1,540 fitting mentions
gathered again on another machine keep every candidate, and the shipped ranker changes 5 of its answers there (4
of them among the 298 photos). A figure from one machine and a figure from another can therefore differ by a
mention on a set of 50 with nothing else changed, so every accuracy bench records where it ran, and two figures
are compared only when they ran on the same kind of machine. This module is a helper, not a bench.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cpu_model(path: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name as the kernel reports it (``"unknown CPU"`` where it cannot be read: not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return "unknown CPU"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return "unknown CPU"


def machine(llm_dtype: str) -> dict[str, Any]:
    """The record a bench keeps in its JSON: CPU model, usable cores, and the LLM precision ``llm_dtype`` (a
    profile's ``llm.dtype``) resolves to on this machine, with the reason."""
    from gemel.models.precision import describe

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "llm_precision": describe(llm_dtype)}


def machine_line(record: dict[str, Any]) -> str:
    """One printed line for the record: ``machine: AMD EPYC (2 cores), LLM auto -> bfloat16 (avx512_bf16)``."""
    return f"machine: {record['cpu']} ({record['cores']} cores), LLM {record['llm_precision']}"

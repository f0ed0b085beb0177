"""bench/_machine.py: the record an accuracy bench keeps of where it ran (CPU, cores, the LLM's precision)."""

from __future__ import annotations

from pathlib import Path

from bench._machine import cpu_model, machine, machine_line


def test_cpu_model_reads_the_x86_model_name(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse\n")
    assert cpu_model(info) == "AMD EPYC 9B14"


def test_cpu_model_reads_an_arm_board_and_says_when_it_cannot(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert cpu_model(info) == "Raspberry Pi 4 Model B Rev 1.4"
    info.write_text("processor\t: 0\nmodel name\t: \n")
    assert cpu_model(info) == "unknown CPU"
    assert cpu_model(tmp_path / "absent") == "unknown CPU"


def test_machine_record_names_the_precision_auto_resolves_to():
    fixed = machine("float32")
    assert fixed["llm_precision"] == "float32" and fixed["cores"] >= 1 and fixed["cpu"]
    auto = machine("auto")["llm_precision"]
    assert auto.startswith("auto -> bfloat16 (") or auto.startswith("auto -> float32 (no native bf16")
    line = machine_line({"cpu": "AMD EPYC", "cores": 2, "llm_precision": "auto -> bfloat16 (avx512_bf16)"})
    assert line == "machine: AMD EPYC (2 cores), LLM auto -> bfloat16 (avx512_bf16)"

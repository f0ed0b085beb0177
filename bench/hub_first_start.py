"""A Space's first start on the `hub` profile: how long until CLIP scores pictures, what it costs per link and in RAM.

The ``hub`` profile's CLIP (LAION ViT-B/32) cannot be downloaded here, so a random-weight model of the same
architecture (``open_clip.create_model("ViT-B-32")``: the same compute) is saved in the Hugging Face cache layout
under the profile's repository name (bench/_hub.py) and read with ``HF_HUB_OFFLINE=1``, through the code path a
Space uses. The run follows a Space's start (demo/space.py) in one process, on the cores torch is given
(``OMP_NUM_THREADS``; a CPU Space has 2):

1. the offline default loads and could serve (``offline_ready_s``);
2. `demo.space.HubUpgrade` switches to ``hub``: CLIP is fetched from the cache and loaded, the KB's 10k entity
   prompts are embedded by CLIP's text tower (cold: their cache folder is removed first; ``entity_embed_s``), the
   hub linker is built beside the offline one (sharing its LLM, embedder and KB), its decision rule is fitted on
   CLIP's scores (cold: a ranker cached for this CLIP is removed first; the shipped fitting data, 124 mentions, each
   linked once: ``ranker_fit_s``) and it is swapped in (the peak RSS of the switch: ``switch_peak_mb``);
   ``first_start_s`` is the time from the process start to the switch (imports included, the making of the
   stand-in hub cache left out);
3. real cases of ``assets/eval/test.jsonl`` (photos) are linked by both linkers in turn, query features not cached
   (``link_p50_s`` hub, ``offline_p50_s`` the offline default, same cases, same run);
4. ``rss_mb``: the process's peak RSS over the whole run (both linkers alive, as during the switch).

Last line: ``entity_embed_s= ranker_fit_s= first_start_s= link_p50_s= offline_p50_s= rss_mb=``. Goals (issue 28): first start
<= 10 min (serving from the first minute on the offline default), link p50 <= 1.3x the offline default's, RSS <=
2.5 GB. Figures with random weights: CLIP's accuracy is not measured here (docs/HUB.md). ``--smoke`` (about a
minute): a tiny CLIP under the same name, one case, the ranker fitted on 6 dev mentions; the same last line,
figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the process's start: a Space's first start is timed from here
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402

# a tiny CLIP with the real tokenizer and image size (smoke runs): the same code, seconds instead of minutes
SMOKE_CLIP = {"embed_dim": 32,
              "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def status(field: str) -> float:
    """A ``/proc/self/status`` memory field in MB (VmRSS: now; VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start VmHWM afresh (Linux: ``5`` to clear_refs), so that the next peak is one step's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


class ServingStudio:
    """What `demo.space.HubUpgrade` uses of the demo's `Studio`: the live linker, and swapping it."""

    def __init__(self, linker) -> None:
        self.linker = linker

    def swap_linker(self, change):
        self.linker = change(self.linker)
        return self.linker


def hub_cache(work: Path, smoke: bool) -> Path:
    """The Hugging Face cache with a random-weight CLIP under the `hub` profile's repository name."""
    import open_clip

    from bench._hub import save_to_hub_cache
    from gemel.config import load_profile

    repo = load_profile("hub").vision.name.removeprefix("hf-hub:")
    if smoke:
        save_to_hub_cache(work, repo, SMOKE_CLIP, 224)
    else:
        save_to_hub_cache(work, repo, open_clip.get_model_config("ViT-B-32"), 224, arch="ViT-B-32")
    return work


def forget_entity_vectors(model: str) -> int:
    """Remove the cached CLIP entity vectors made by ``model`` (any KB), so that the start embeds them cold;
    returns how many caches were removed."""
    import json

    from gemel.sources import cache_dir

    removed = 0
    for mark in cache_dir("clip-entities").glob("*/progress.json"):
        if json.loads(mark.read_text()).get("model") == model:
            shutil.rmtree(mark.parent)
            removed += 1
    return removed


def forget_rankers(model: str) -> int:
    """Remove the rankers fitted at a first start for ``model``'s scores (and their gathered features), so that the
    start fits cold; returns how many were removed."""
    import json

    from gemel.sources import cache_dir

    removed = 0
    for path in cache_dir("rankers").glob("*.json"):
        if json.loads(path.read_text()).get("manifest", {}).get("scorer", {}).get("model") == model:
            path.with_name(path.stem + ".groups.jsonl.gz").unlink(missing_ok=True)
            path.unlink()
            removed += 1
    return removed


def smoke_fit_data(work: Path) -> list[Path]:
    """The first 6 lines of the shipped dev split: a smoke run's fitting data."""
    from gemel.training.first_start import FITTING_DATA

    dev = FITTING_DATA[1]
    lines = dev.read_text(encoding="utf-8").splitlines()[:6]
    out = work / "fit-smoke.jsonl"
    out.write_text("".join(json.dumps({**d, "image": str((dev.parent.parent / d["image"]).resolve())}) + "\n"
                           for d in map(json.loads, lines)), encoding="utf-8")
    return [out]


def link_times(linkers: dict, cases: list) -> dict[str, list[float]]:
    """Seconds per link of each linker on each case, in turn (order swapped every case), query features cold."""
    out: dict[str, list[float]] = {name: [] for name in linkers}
    for i, ex in enumerate(cases):
        names = list(linkers) if i % 2 == 0 else list(reversed(linkers))
        for name in names:
            linker = linkers[name]
            linker.features.forget(ex.image)
            t = time.perf_counter()
            pred = linker.link(ex.image, ex.text, ex.mention)
            out[name].append(time.perf_counter() - t)
            print(f"{ex.id} {name}: {out[name][-1]:.2f} s -> {pred.entity} ({pred.image})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=8, help="test cases each linker links")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    work = smoke_out("hub_first_start") if args.smoke else ROOT / "bench" / "out" / "hub_first_start"
    os.environ.update(HF_HUB_CACHE=str(work / "hub"), HF_HUB_OFFLINE="1")  # before huggingface_hub is imported
    cases_n = 1 if args.smoke else args.cases

    import torch

    from demo.space import HubUpgrade
    from gemel.config import load_profile
    from gemel.kb.demonstrations import load_jsonl_examples
    from gemel.linker import Linker

    imports_s = time.perf_counter() - STARTED  # what a Space's start pays before loading anything
    hub_cache(work / "hub", args.smoke)
    forget_entity_vectors(load_profile("hub").vision.name)
    forget_rankers(load_profile("hub").vision.name)
    start = time.perf_counter()
    offline = Linker.load("offline")
    offline_ready_s = imports_s + time.perf_counter() - start
    print(f"offline default ready {offline_ready_s:.0f} s after the start (could serve from here)", flush=True)
    load_peak_mb = status("VmHWM")
    studio = ServingStudio(offline)
    reset_peak()
    upgrade = HubUpgrade(studio, "hub", local_only=True, fit_data=smoke_fit_data(work) if args.smoke else None)
    upgrade.run()
    if not upgrade.switched or studio.linker.awaits_fit:
        raise SystemExit(f"the switch to hub (its ranker fitted) failed: {upgrade.status}")
    switch_peak_mb = status("VmHWM")
    first_start_s = imports_s + time.perf_counter() - start
    hub = studio.linker
    cases = [e for e in load_jsonl_examples(ROOT / "assets/eval/test.jsonl", "test") if e.entity and e.image]
    cases = cases[:cases_n]
    try:
        for linker in (hub, offline):  # warm-up: demonstration features cached, as in steady use
            linker.link(cases[0].image, cases[0].text, cases[0].mention)
        times = link_times({"hub": hub, "offline": offline}, cases)
    finally:  # the random model's picture features, cached under the released model's name: never to be reused
        shutil.rmtree(hub.features.folder, ignore_errors=True)
    p50 = statistics.median
    t = upgrade.timings
    print(f"threads={torch.get_num_threads()} entities={len(hub.kb)} clip={hub.image_scorer.version} "
          f"offline_ready_s={offline_ready_s:.1f} fetch_s={t['fetch']:.1f} vision_s={t['vision']:.1f} "
          f"linker_s={t['linker']:.1f} ranker={hub.ranker.version} embed_rate={len(hub.kb) / max(t['entity_texts'], 1e-9):.1f}/s "
          f"load_peak_mb={load_peak_mb:.0f} switch_peak_mb={switch_peak_mb:.0f} serving_rss_mb={status('VmRSS'):.0f} "
          f"ratio={p50(times['hub']) / p50(times['offline']):.2f}")
    print(f"entity_embed_s={t['entity_texts']:.1f} ranker_fit_s={t['ranker']:.1f} first_start_s={first_start_s:.1f} "
          f"link_p50_s={p50(times['hub']):.2f} offline_p50_s={p50(times['offline']):.2f} "
          f"rss_mb={max(load_peak_mb, switch_peak_mb, status('VmHWM')):.0f}")


if __name__ == "__main__":
    main()

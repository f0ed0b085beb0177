"""What the image signal costs per `Linker.link`: the profile with its ``[image]`` section against the same
profile without it, alternating on the same real test cases in one process (so that a busy machine slows both
alike; ``bench/link_latency.py`` times one profile alone). The profile without the scorer decides with the shipped
ranker that reads no picture feature (the ranker's own cost is in both).

    python bench/image_latency.py [--profile offline] [--cases 8]

Last line: ``image_ratio=<p50 with / p50 without> with_p50_s= without_p50_s= image_scores_ms=`` (goal <= 1.1).
``--smoke`` (half a minute): 2 cases (both orders), the same last line, figures meaningless.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="offline")
    p.add_argument("--cases", type=int, default=8, help="real test cases, each linked with and without")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    args.cases = 2 if args.smoke else args.cases  # 2: each order of the alternation once

    import torch

    from gemel.config import ProfileError, load_profile
    from gemel.kb.demonstrations import load_jsonl_examples
    from gemel.linker import Linker

    torch.set_num_threads(1)
    config = load_profile(args.profile)
    if not config.image.active:
        raise ProfileError(f"profile {args.profile!r} has no [image] scorer: nothing to compare")
    with_image = Linker.load(config)
    # the profile's ranker reads the scorer's features: without the scorer, the shipped one that reads none decides
    without = with_image.replace(config=config.replace(image={"scorer": "", "candidates": 0},
                                                       rank={"model": ""}))
    cases = [e for e in load_jsonl_examples(ROOT / "assets/eval/test.jsonl", "test") if e.entity][: args.cases]
    with_image.link(cases[0].image, cases[0].text, cases[0].mention)  # warm-up: demonstration features cached
    times: dict[str, list[float]] = {"with": [], "without": []}
    scores_ms = []
    for i, ex in enumerate(cases):
        order = (("with", with_image), ("without", without)) if i % 2 == 0 else (("without", without),
                                                                                ("with", with_image))
        for name, linker in order:
            linker.features.forget(ex.image)  # a cold query picture, as a new upload would be
            t = time.perf_counter()
            pred = linker.link(ex.image, ex.text, ex.mention, exclude=[ex.id])
            times[name].append(time.perf_counter() - t)
            print(f"{ex.id} {name:7s} {times[name][-1]:.2f} s, {len(pred.candidates)} candidates", flush=True)
        t = time.perf_counter()
        with_image.image_scores(ex.image)
        scores_ms.append((time.perf_counter() - t) * 1000)
    w, wo = statistics.median(times["with"]), statistics.median(times["without"])
    print(f"image_ratio={w / wo:.3f} with_p50_s={w:.2f} without_p50_s={wo:.2f} "
          f"image_scores_ms={statistics.median(scores_ms):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

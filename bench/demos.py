"""How many demonstrations the prompt needs, with the learned ranker deciding: n = 4, 8, 16 against accuracy and speed.

    python bench/demos.py [--profile offline] [--folds 5] [--smoke]

For each n the offline linker (``demos.n = n``) gathers the ranker's features of its real-photo training data
(the seed pool, ``assets/eval/dev.jsonl``, ``assets/eval/outpool.jsonl``; through ``gemel fit-ranker``'s cache,
keyed by the profile, so a profile's n is linked once) and the ranker is cross-validated on them, as
``bench/ranker.py`` does. Measured per n:

1. the ranker's out-of-fold accuracy over all three files (``cv``) and over dev alone (``dev out-of-fold``);
2. the link's p50 seconds per mention and its prompt's p50 length in tokens, every dev mention linked once more
   (after one untimed warm-up link; each kept out of its own prompt).

The rule shipped: ``chosen_n`` is the smallest n whose CV accuracy is within one point (0.01) of the best n's.
The test split is never read. Writes ``bench/out/demos.json`` and ``docs/img/demos.png``. Last line:
``n4_cv= n8_cv= n16_cv= n4_p50_s= n8_p50_s= n16_p50_s= chosen_n=``.

``--smoke``: 4 examples per file, 2 folds, n = 4 and 16 only (n = 8's figures ``n/a``), everything under
``bench/out/smoke/demos/``; the same last line, figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402
from bench.ranker import TRAIN_FILES, examples_of, gathered_file  # noqa: E402

NS = (4, 8, 16)
WITHIN = 0.01  # one point of accuracy


def timed(gather: Any, path: Path, limit: int | None) -> tuple[list[float], list[int]]:
    """(seconds, prompt tokens) of each example of ``path`` linked by ``gather``, after one untimed link."""
    examples = examples_of(path, limit)
    seconds, tokens = [], []
    for i, ex in enumerate([examples[0], *examples]):
        t0 = time.perf_counter()
        pred = gather.link(ex.image, ex.text, ex.mention, exclude=[ex.id] if ex.id else [],
                           verbatim=ex.meta.get("verbatim", True))
        if i:  # the first is the warm-up
            seconds.append(time.perf_counter() - t0)
            tokens.append(pred.prompt_tokens)
    return seconds, tokens


def measure(gather: Any, folds: int, cache: Path | None, limit: int | None) -> dict[str, Any]:
    """One n's figures: CV accuracy (all files, dev alone), link p50 and prompt tokens on dev."""
    from gemel.training.ranker import answer, cross_validate

    groups = [g for f in TRAIN_FILES for g in gathered_file(gather, f, f.stem, cache, limit)]
    cv = cross_validate(groups, k=folds)
    dev = [i for i, g in enumerate(groups) if g.tags.get("split") == "dev"]
    dev_cv = float(np.mean([answer(groups[i], cv.probabilities[i], cv.nil_below) == groups[i].gold for i in dev]))
    seconds, tokens = timed(gather, TRAIN_FILES[1], limit)
    return {"cv": cv.accuracy, "dev_cv": dev_cv, "l2": cv.l2, "nil_below": cv.nil_below, "mentions": len(groups),
            "dev_mentions": len(dev), "link_p50_s": float(np.median(seconds)),
            "prompt_tokens_p50": float(np.median(tokens)), "link_s": seconds, "prompt_tokens": tokens}


def chosen(rows: dict[int, dict[str, Any]]) -> int:
    """The smallest n whose CV accuracy is within `WITHIN` of the best."""
    best = max(r["cv"] for r in rows.values())
    return min(n for n, r in rows.items() if r["cv"] >= best - WITHIN - 1e-12)


def table(rows: dict[int, dict[str, Any]]) -> str:
    lines = ["| n | cv accuracy | dev out-of-fold | link p50 s | prompt tokens p50 |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {r['cv']:.3f} ({r['mentions']}) | {r['dev_cv']:.3f} ({r['dev_mentions']}) | "
              f"{r['link_p50_s']:.2f} | {r['prompt_tokens_p50']:.0f} |" for n, r in rows.items()]
    return "\n".join(lines)


def plot(rows: dict[int, dict[str, Any]], pick: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = list(rows)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(ns, [rows[n]["cv"] for n in ns], "o-", color="tab:blue", label="CV accuracy (all)")
    ax.plot(ns, [rows[n]["dev_cv"] for n in ns], "s--", color="tab:cyan", label="dev out-of-fold")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.axvline(pick, color="tab:gray", lw=0.8, ls=":")
    ax.set(xticks=ns, xticklabels=[str(n) for n in ns], xlabel="demonstrations n",
           ylabel="accuracy", title=f"demonstrations vs accuracy and speed (chosen n={pick})")
    right = ax.twinx()
    right.plot(ns, [rows[n]["link_p50_s"] for n in ns], "^-", color="tab:red", label="link p50 (s)")
    right.set_ylabel("link p50 s", color="tab:red")
    right.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="offline")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    limit = 4 if args.smoke else None
    out = smoke_out("demos") if args.smoke else ROOT / "bench" / "out"
    cache = out / "demos-groups" if args.smoke else None  # a smoke run's own; else fit-ranker's

    from gemel.cli.rank import gatherer
    from gemel.linker import Linker

    linker = Linker.load(args.profile)
    rows: dict[int, dict[str, Any]] = {}
    for n in (4, 16) if args.smoke else NS:
        variant = gatherer(linker.replace(config=linker.config.replace(demos={"n": n})))
        rows[n] = measure(variant, 2 if args.smoke else args.folds, cache, limit)
        print(f"n={n}: cv {rows[n]['cv']:.3f}, link p50 {rows[n]['link_p50_s']:.2f} s", file=sys.stderr)
    pick = chosen(rows)
    report = {"rows": rows, "chosen_n": pick, "rule": f"smallest n with CV accuracy >= best - {WITHIN}",
              "folds": 2 if args.smoke else args.folds, "profile": args.profile}
    (out / "demos.json").write_text(json.dumps(report, indent=1))
    print(table(rows))
    if not args.smoke:
        plot(rows, pick, ROOT / "docs" / "img" / "demos.png")
    cv = {n: f"{rows[n]['cv']:.3f}" if n in rows else "n/a" for n in NS}
    p50 = {n: f"{rows[n]['link_p50_s']:.2f}" if n in rows else "n/a" for n in NS}
    print(" ".join([*(f"n{n}_cv={cv[n]}" for n in NS), *(f"n{n}_p50_s={p50[n]}" for n in NS), f"chosen_n={pick}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy of the embedding-lookup baseline and of the linker, side by side, on real photos.

The baseline ranks KB entries by the cosine similarity of the mention-in-context embedding to
"title: description" (the linker's own candidate retrieval, alone). The linker is the profile as configured.
Evaluated on ``assets/eval/test.jsonl`` (never tuned on); ``--split dev`` for the tuning split; ``--split
outpool`` for ``assets/eval/outpool.jsonl``: photos from scikit-image's data that no pool, corpus or trained
part has seen, read from the installed package.

    python bench/quality.py [--profile offline] [--split test] [--limit N]

Cases whose picture (by file content) is also in the seed demonstration pool are "in-pool": the untrained
mapper's prefix then fingerprints an identical picture, so they are reported apart from the out-of-pool ones.

Last line: ``baseline_acc=<a> linker_acc=<b> n=<n> recall_at_k=<r> link_p50_s=<t> in_pool=<right>/<n>
out_of_pool=<right>/<n>``. ``--smoke`` (half a minute): the first 2 cases, the same last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP  # noqa: E402
from gemel.data.metrics import wilson_interval  # noqa: E402
from gemel.kb.demonstrations import load_jsonl_examples  # noqa: E402
from gemel.linker import Linker  # noqa: E402
from gemel.models.embedder import mention_in_context  # noqa: E402


def seed_pictures() -> set[str]:
    """sha256 of every picture of the seed demonstration pool."""
    seed = load_jsonl_examples(ROOT / "gemel" / "assets" / "seed" / "examples.jsonl", "seed")
    return {_sha(e.image) for e in seed if e.image}


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="offline")
    ap.add_argument("--split", default="test", choices=["test", "dev", "outpool"])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--show-errors", action="store_true")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    args.limit = 2 if args.smoke else args.limit
    cases = [e for e in load_jsonl_examples(ROOT / "assets" / "eval" / f"{args.split}.jsonl", args.split)
             if e.entity]
    cases = cases[: args.limit] if args.limit else cases
    linker = Linker.load(args.profile)
    base_ok = link_ok = in_k = 0
    times = []
    seed = seed_pictures()
    by_pool = {"in-pool": [0, 0], "out-of-pool": [0, 0]}  # [right, n]
    for ex in tqdm(cases, desc=f"{args.split}", unit="case"):
        q = linker.embedder.encode([mention_in_context(ex.text, ex.mention)])
        _, ids = linker.kb_index.search(q, 1)
        base = linker.kb.entities[int(ids[0][0])].title
        pred = linker.link(ex.image, ex.text, ex.mention)
        times.append(pred.timings["total"])
        base_ok += base == ex.entity
        link_ok += pred.entity == ex.entity
        in_k += any(c.name == ex.entity for c in pred.candidates)
        pool = by_pool["in-pool" if ex.image and _sha(ex.image) in seed else "out-of-pool"]
        pool[0] += pred.entity == ex.entity
        pool[1] += 1
        if args.show_errors and pred.entity != ex.entity:
            print(json.dumps({"id": ex.id, "mention": ex.mention, "gold": ex.entity, "linker": pred.entity,
                              "baseline": base}), file=sys.stderr)
    n = len(cases)
    for name, ok in (("embedding lookup", base_ok), (f"linker ({args.profile})", link_ok)):
        lo, hi = wilson_interval(ok, n)
        print(f"{name:<28} {ok:>3}/{n}  {ok / n:6.1%}  (95% CI {lo:.1%}-{hi:.1%})")
    print(f"gold entity among the linker's candidates: {in_k}/{n}")
    for name, (ok, m) in by_pool.items():
        lo, hi = wilson_interval(ok, m) if m else (0.0, 0.0)
        print(f"linker, {name} pictures {ok:>3}/{m}" + (f"  {ok / m:6.1%}  (95% CI {lo:.1%}-{hi:.1%})" if m else ""))
    (pin, nin), (pout, nout) = by_pool["in-pool"], by_pool["out-of-pool"]
    print(f"baseline_acc={base_ok / n:.3f} linker_acc={link_ok / n:.3f} n={n} recall_at_k={in_k / n:.3f} "
          f"link_p50_s={statistics.median(times):.2f} in_pool={pin}/{nin} out_of_pool={pout}/{nout}")


if __name__ == "__main__":
    main()

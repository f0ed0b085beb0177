"""Learning curve of the correction loop: does every stored correction help the items nobody corrected?

k-fold over the shipped real-photo splits (``assets/eval/test.jsonl`` and ``dev.jsonl``, never the seed pool):
each fold's held-out items are linked after 0, 10, 25 and 50% of the *other* items were stored as corrections
(through `annotations.loop.CorrectionLoop`, exactly as the app stores them: they become demonstrations and
exact memory at once). A held-out item is never corrected itself, so the exact memory never answers it: the
curve measures what in-context corrections teach about other items. Two demonstration rules are compared:
``demos.same_caption = "drop"`` (the default: a labelled example with the query's own caption stays out of its
prompt) and ``"keep"`` (the earlier behaviour).

Re-training from corrections is not measured yet (no trained part is shipped): the last line says so.

    .venv/bin/python bench/learning_curve.py                # both splits, 2 folds (~15 min on 2 cores in bf16)
    .venv/bin/python bench/learning_curve.py --limit 20     # a quick look

Last line: ``n0= n10= n25= n50= retrained=`` (accuracy of the default rule at each share, pooled over folds),
then ``keep:`` the same for the old rule. Writes ``bench/out/learning_curve.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.learning_curve")
SHARES = (0.0, 0.10, 0.25, 0.50)
RULES = ("drop", "keep")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="offline")
    p.add_argument("--splits", default="test,dev", help="comma-separated shipped splits (default: test,dev)")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--limit", type=int, help="use the first N items of the splits only (a quick run)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    return p.parse_args(argv)


def _order(ex: Any) -> str:
    return hashlib.sha256(str(ex.id).encode()).hexdigest()  # a fixed shuffle, the same on every machine


def folds(items: list[Any], k: int) -> list[tuple[list[Any], list[Any]]]:
    """(held out, the others) per fold; the others in a fixed shuffled order (their first p% are corrected)."""
    ordered = sorted(items, key=_order)
    return [([x for i, x in enumerate(ordered) if i % k == f], [x for i, x in enumerate(ordered) if i % k != f])
            for f in range(k)]


def run_point(linker: Any, held: list[Any], corrections: list[Any]) -> int:
    """Correct ``corrections`` in a fresh store (one annotator), then count right links of ``held``."""
    from annotations import Store
    from annotations.loop import CorrectionLoop

    variant = linker.replace(pool=linker.labelled_pool.with_examples())
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "gemel.db") as store:
        loop = CorrectionLoop(store, variant)
        for ex in corrections:
            decision = "search" if ex.entity else "nil"
            loop.record("bench", decision, ex.entity, text=ex.text, mention=ex.mention, image=ex.image)
        return sum(variant.link(ex.image, ex.text, ex.mention).entity == ex.entity for ex in held)


def curve(linker: Any, items: list[Any], k: int, rule: str) -> dict[float, int]:
    from tqdm import tqdm

    variant = linker.replace(config=linker.config.replace(demos={"same_caption": rule}))
    right = {s: 0 for s in SHARES}
    bar = tqdm(total=len(SHARES) * len(items), desc=f"same_caption={rule}", unit="link", file=sys.stderr)
    for held, others in folds(items, k):
        for share in SHARES:
            right[share] += run_point(variant, held, others[: round(share * len(others))])
            bar.update(len(held))
    bar.close()
    return right


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    from gemel.demonstrations import load_jsonl_examples
    from gemel.linker import Linker
    from gemel.metrics import wilson_interval

    items = [ex for split in args.splits.split(",")
             for ex in load_jsonl_examples(ROOT / "assets" / "eval" / f"{split}.jsonl", split)]
    items = items[: args.limit] if args.limit else items
    linker = Linker.load(args.profile)
    n = len(items)
    results = {rule: curve(linker, items, args.folds, rule) for rule in RULES}
    rows = []
    for rule, right in results.items():
        for share, ok in right.items():
            lo, hi = wilson_interval(ok, n)
            rows.append({"rule": rule, "share": share, "right": ok, "n": n, "accuracy": ok / n, "ci": [lo, hi]})
            print(f"same_caption={rule:<5} corrections {share:4.0%} of the others: {ok}/{n} = {ok / n:.1%} "
                  f"(95% CI {lo:.1%}-{hi:.1%})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curve.json").write_text(json.dumps({"items": n, "folds": args.folds, "splits": args.splits,
                                                         "profile": args.profile, "rows": rows}, indent=2))
    _plot(rows, out / "learning_curve.png")
    fig = {rule: " ".join(f"n{round(s * 100)}={right[s] / n:.3f}" for s in SHARES) for rule, right in results.items()}
    print(f"wrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")
    print(f"{fig['drop']} retrained=not-yet keep: {fig['keep']}")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for rule, style in zip(RULES, ("-o", "--s")):
        pts = [r for r in rows if r["rule"] == rule]
        xs = [100 * r["share"] for r in pts]
        ax.plot(xs, [100 * r["accuracy"] for r in pts], style, label=f"demos.same_caption = {rule}")
        ax.fill_between(xs, [100 * r["ci"][0] for r in pts], [100 * r["ci"][1] for r in pts], alpha=0.12)
    ax.set_xlabel("share of the other items stored as corrections (%)")
    ax.set_ylabel("accuracy on held-out items (%)")
    ax.set_title(f"Learning curve of the correction loop (n = {rows[0]['n']}, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    raise SystemExit(main())

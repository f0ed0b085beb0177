"""Learning curve of the correction loop: does every stored correction help the items nobody corrected, and does
a refit from the corrections teach the decision without turning a right answer wrong?

    python bench/learning_curve.py                       # the shipped ranker, both splits (~25 min, 2 cores)
    python bench/learning_curve.py --splits test --limit 20   # a quick look
    python bench/learning_curve.py --no-refit   # corrections in context and as features only
    python bench/learning_curve.py --smoke               # 6 test items, 2 folds (~2 min)

Two splits, k folds each (2 by default): each fold's held-out items are linked after 0, 10, 25 and 50% of the
*other* items were stored as corrections (through `annotations.loop.CorrectionLoop`, exactly as the app stores
them: demonstrations, picture memory and the ranker's decision features at once). A held-out item is never
corrected itself, so the exact memory never answers it. At 50% the decision is also **refit** from that point's
store exactly as the Data tab's "Re-train from corrections" does it (`gemel.training.retrain.retrain` with the
part `parts_for` chooses: the ranker, refitted on its shipped data plus the store's decisions; the gate judged on
the fold's uncorrected other items), and the held-out items are linked again with the refit rule
(``refit50``, whatever the gate said; ``served50`` is what the app would serve).

- ``test``: ``assets/eval/test.jsonl``, real photos about different entities (none of it is in the ranker's data).
- ``recurring-dev`` (only when asked, ``--splits recurring-dev``; keys prefixed ``dev_``): the same built from the
  corpus *dev* split with the style fold (``gemel corpus captions --hold-out-style twemoji``), the split to tune
  the correction loop on; its pictures are among the ranker's fitting data (with other captions), so its ``n0``
  is optimistic, its flips are what it is for.
- ``photos-dev`` (only when asked; keys ``pdev_``): the real photos of ``assets/eval/dev.jsonl`` and
  ``outpool.jsonl`` (59 mentions; several share a picture, as on the test split): the correction loop on photos,
  to tune on. They are the ranker's fitting data, so its ``n0`` is optimistic.
- ``recurring``: ``data/captions/recurring.jsonl`` (``gemel corpus captions``): entities of the corpus *test*
  split with pictures in two or more art styles, each picture with its own caption that names nothing, and pairs
  of entities sharing captions, a trap for a rule that copies a correction by caption (``n/a`` when absent).

``flips`` counts the held-out items right with no correction stored and wrong at some later point (any share, or
the refit): the corrections of other items turned them wrong. Writes ``bench/out/learning_curve.json`` and
``docs/img/learning_curve.png``. Last line: ``n0= n10= n25=
n50= refit50= served50= gate= flips=`` for the test split, then the same keys prefixed ``rec_`` for the recurring
split.

``--smoke``: the first 6 test items, 2 folds, refit at 50%, no recurring split, under ``bench/out/smoke/``; the
same last line, figures meaningless.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._machine import machine, machine_line  # noqa: E402
from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402

log = logging.getLogger("bench.learning_curve")
SHARES = (0.0, 0.10, 0.25, 0.50)
REFIT_AT = 0.50
RANKER = ROOT / "gemel" / "assets" / "models" / "ranker.json"
SPLITS = {"test": (ROOT / "assets" / "eval" / "test.jsonl",),
          "recurring": (ROOT / "data" / "captions" / "recurring.jsonl",),
          "recurring-dev": (ROOT / "data" / "captions" / "recurring-dev.jsonl",),
          "photos-dev": (ROOT / "assets" / "eval" / "dev.jsonl", ROOT / "assets" / "eval" / "outpool.jsonl")}
PREFIX = {"test": "", "recurring": "rec_", "recurring-dev": "dev_", "photos-dev": "pdev_"}  # keys on the last line
DEV_SPLITS = ("recurring-dev", "photos-dev")  # run only when asked


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="offline")
    p.add_argument("--ranker", default=str(RANKER), help="the learned ranker to start from (default: the shipped one; "
                                                          "\"\": the shipped one that reads no picture)")
    p.add_argument("--no-refit", action="store_true", help="corrections in context only (refit50=n/a)")
    p.add_argument("--splits", default="test,recurring", help="comma-separated, of test, recurring, recurring-dev, "
                   "photos-dev (dev pictures: tune on the last two, never on the others)")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--limit", type=int, help="the first N items of each split only (a quick look)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    if args.smoke:
        args.splits, args.limit, args.folds, args.out = "test", 6, 2, str(smoke_out("learning_curve"))
    unknown = [s for s in args.splits.split(",") if s not in SPLITS]
    if unknown:
        raise SystemExit(f"--splits {args.splits!r}: {unknown[0]!r} is not one of {', '.join(SPLITS)}")
    return args


# ---- folds and figures (pure) ---------------------------------------------------------------------------
def _order(ex: Any) -> str:
    return hashlib.sha256(str(ex.id).encode()).hexdigest()  # a fixed shuffle, the same on every machine


def folds(items: list[Any], k: int) -> list[tuple[list[Any], list[Any]]]:
    """(held out, the others) per fold; the others in a fixed shuffled order (their first p% are corrected)."""
    ordered = sorted(items, key=_order)
    return [([x for i, x in enumerate(ordered) if i % k == f], [x for i, x in enumerate(ordered) if i % k != f])
            for f in range(k)]


@dataclass
class Curve:
    """One split's outcome: per held-out item id, right or not at each point ("n0".."n50", "refit50")."""

    split: str
    right: dict[str, dict[str, bool]] = field(default_factory=dict)  # point -> item id -> right
    gate: list[bool] = field(default_factory=list)  # per fold: the refit was accepted
    reasons: list[str] = field(default_factory=list)  # per fold: the gate's sentence
    fold_of: dict[str, int] = field(default_factory=dict)  # item id -> its fold
    seconds: float = 0.0

    def mark(self, point: str, ids: Sequence[str], right: Sequence[bool]) -> None:
        self.right.setdefault(point, {}).update(zip(ids, right))

    def accuracy(self, point: str) -> float | None:
        got = self.right.get(point, {})
        return sum(got.values()) / len(got) if got else None

    @property
    def served(self) -> dict[str, bool]:
        """Per item: the refit rule's answer in folds where the gate accepted it, else the in-context one."""
        refit, old = self.right.get(f"refit{_pct(REFIT_AT)}", {}), self.right.get(f"n{_pct(REFIT_AT)}", {})
        adopted = {i for i, fold in self.fold_of.items() if fold < len(self.gate) and self.gate[fold]}
        return {i: refit[i] if i in adopted and i in refit else right for i, right in old.items()}

    def flips(self) -> int:
        """Items right with no correction stored and wrong at a later point (any share or the refit)."""
        base = self.right.get("n0", {})
        later = [p for p in self.right if p != "n0"]
        return sum(ok and any(not self.right[p].get(i, True) for p in later) for i, ok in base.items())

    def figures(self, prefix: str = "") -> str:
        served = self.served
        points = [f"n{_pct(s)}" for s in SHARES] + [f"refit{_pct(REFIT_AT)}"]
        out = [f"{prefix}{p}={_fmt(self.accuracy(p))}" for p in points]
        out.append(f"{prefix}served{_pct(REFIT_AT)}=" + _fmt(sum(served.values()) / len(served) if served else None))
        out.append(f"{prefix}gate={sum(self.gate)}/{len(self.gate)}")
        out.append(f"{prefix}flips={self.flips() if self.right else 'n/a'}")
        return " ".join(out)


def _pct(share: float) -> int:
    return round(100 * share)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ---- running ----------------------------------------------------------------------------------------------
def _answers(linker: Any, held: list[Any]) -> list[bool]:
    return [linker.link(ex.image, ex.text, ex.mention).entity == ex.entity for ex in held]


def run_fold(linker: Any, held: list[Any], others: list[Any], curve: Curve, fold: int, out: Path | None) -> None:
    """Every share of one fold (a fresh store each), and the refit at ``REFIT_AT`` into ``out`` (None: none)."""
    from annotations import Store
    from annotations.loop import CorrectionLoop

    ids = [str(ex.id) for ex in held]
    curve.fold_of.update({i: fold for i in ids})
    for share in SHARES:
        cut = round(share * len(others))
        variant = linker.replace(pool=linker.labelled_pool.with_examples())
        with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "gemel.db") as store:
            loop = CorrectionLoop(store, variant)
            for ex in others[:cut]:
                loop.record("bench", "search" if ex.entity else "nil", ex.entity, text=ex.text, mention=ex.mention,
                            image=ex.image)
            right = _answers(variant, held)
            curve.mark(f"n{_pct(share)}", ids, right)
            log.warning("%s fold %d, %d corrections: %d of %d right", curve.split, fold, cut, sum(right), len(held))
            if share == REFIT_AT and out is not None:
                refit(variant, store, held, others[cut:], curve, out / f"refit-{curve.split}-{fold}")


def refit(variant: Any, store: Any, held: list[Any], gate_test: list[Any], curve: Curve, out: Path) -> None:
    """Refit the decision from ``store``'s decisions as the Data tab does, then link ``held`` with it."""
    from annotations.validation import ENTITY_DECISIONS
    from gemel.errors import GemelError
    from gemel.training.retrain import RetrainConfig, parts_for, retrain
    from gemel.types import Example

    examples = [Example.from_dict(d) for d in store.training_examples((*ENTITY_DECISIONS, "nil"))]
    ids = [str(ex.id) for ex in held]
    try:
        result = retrain(variant, examples, out, RetrainConfig(), test_examples=gate_test, parts=parts_for(variant))
    except GemelError as e:  # too few decisions: the refit is the rule as it was
        log.warning("no refit for %s: %s", curve.split, e)
        curve.mark(f"refit{_pct(REFIT_AT)}", ids, [curve.right[f"n{_pct(REFIT_AT)}"][i] for i in ids])
        curve.gate.append(False)
        curve.reasons.append(str(e))
        return
    refitted = result.adopt(variant) if result.accepted else variant.replace(
        **{result.part: getattr(result.candidate, result.part)})
    right = _answers(refitted, held)
    curve.mark(f"refit{_pct(REFIT_AT)}", ids, right)
    curve.gate.append(result.accepted)
    curve.reasons.append(result.reason)
    log.warning("%s refit on %d decisions in %.0f s: %s; held-out %d of %d right", curve.split, result.n_train,
                result.seconds, result.reason, sum(right), len(held))


def load_split(name: str, limit: int | None) -> list[Any] | None:
    from gemel.kb.demonstrations import load_jsonl_examples

    items = []
    for path in SPLITS[name]:
        if not path.is_file():
            log.warning("no %s split at %s (make it with `gemel corpus captions --out data/captions`)", name, path)
            return None
        items += load_jsonl_examples(path, name)
    return items[:limit] if limit else items


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    from gemel.linker import Linker

    linker = Linker.load(args.profile, rank={"model": args.ranker})
    ran_on = machine(linker.config.llm.dtype)
    print(machine_line(ran_on), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for name in SPLITS:
        items = load_split(name, args.limit) if name in args.splits.split(",") else None
        curves[name] = Curve(name)
        if not items:
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for f, (held, others) in enumerate(folds(items, args.folds)):
                run_fold(linker, held, others, curves[name], f, None if args.no_refit else Path(tmp))
        curves[name].seconds = time.perf_counter() - t0
        print(f"{name} ({len(items)} items, {args.folds} folds, {curves[name].seconds:.0f} s): "
              f"{curves[name].figures()}; gate: {' | '.join(curves[name].reasons)}")
    name = "learning_curve"
    (out / f"{name}.json").write_text(json.dumps(
        {"profile": args.profile, "ranker": args.ranker, "folds": args.folds, "machine": ran_on,
         "curves": {n: {"right": c.right, "gate": c.gate, "reasons": c.reasons, "seconds": c.seconds,
                        "figures": c.figures()} for n, c in curves.items()}}, indent=1))
    if not args.smoke:  # the documented plot is the default splits'; another choice plots beside its JSON
        documented = set(args.splits.split(",")) == {"test", "recurring"}
        plot(curves, (ROOT / "docs" / "img" if documented else out) / f"{name}.png")
    shown = [n for n in SPLITS if n not in DEV_SPLITS or n in args.splits.split(",")]
    print(" ".join(curves[n].figures(PREFIX[n]) for n in shown))
    return 0


def plot(curves: dict[str, Curve], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (name, c), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        if not c.right:
            continue
        n = len(c.right["n0"])
        xs = [100 * s for s in SHARES]
        ax.plot(xs, [100 * c.accuracy(f"n{_pct(s)}") for s in SHARES], "-o", color=color,
                label=f"{name} (n={n}), corrections in context (flips {c.flips()})")
        if c.accuracy(f"refit{_pct(REFIT_AT)}") is not None:
            ax.plot([100 * REFIT_AT], [100 * c.accuracy(f"refit{_pct(REFIT_AT)}")], "*", color=color, markersize=13,
                    label=f"{name}: refit from the corrections (gate {sum(c.gate)}/{len(c.gate)})")
    ax.set(xlabel="share of the other items stored as corrections (%)", ylabel="accuracy on held-out items (%)",
           title="Learning curve of the correction loop")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


if __name__ == "__main__":
    raise SystemExit(main())

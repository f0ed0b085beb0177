"""Learning curve of the correction loop: does every stored correction help the items nobody corrected?

k-fold over the shipped real-photo splits (``assets/eval/test.jsonl`` and ``dev.jsonl``, never the seed pool):
each fold's held-out items are linked after 0, 10, 25 and 50% of the *other* items were stored as corrections
(through `annotations.loop.CorrectionLoop`, exactly as the app stores them: they become demonstrations and
exact memory at once). A held-out item is never corrected itself, so the exact memory never answers it: the
curve measures what in-context corrections teach about other items. Two demonstration rules are compared:
``demos.same_caption = "drop"`` (the default: a labelled example with the query's own caption stays out of its
prompt) and ``"keep"`` (the earlier behaviour).

**Re-training** (the default rule only, at the ``--retrain-shares``, 50% by default): the feature mapper is
re-trained from that point's stored decisions exactly as the app's Data tab does it (``demo.retrain_job``: the
store's gold examples, NIL included, through `gemel.training.retrain.retrain` with the default `RetrainConfig`, its
acceptance gate included). The gate's test split is the *uncorrected* other items of the fold (the app uses the
shipped test split, but here that holds the held-out items, which must not judge their own model). Two figures:
``retrained`` is the held-out accuracy with the re-trained mapper plus the in-context corrections, whatever the
gate said; ``served`` is what the app would serve: the re-trained mapper where the gate accepted it, else the old
mapper (the in-context point). ``gate=`` says in how many folds the gate accepted.

    .venv/bin/python bench/learning_curve.py --rules drop   # both splits, 2 folds, re-trained at 50% (~75 min, 2 cores)
    .venv/bin/python bench/learning_curve.py --limit 20 --no-retrain     # a quick look
    .venv/bin/python bench/learning_curve.py --smoke   # rule drop on 6 items, re-trained at 50% (~70 s)

Last line: ``n0= n10= n25= n50= retrained= served= gate=`` (accuracy of the default rule at each share and after
re-training at 50%, pooled over folds; ``retrained=not-yet`` with ``--no-retrain``), then ``keep:`` the in-context
curve of the old rule. Writes ``bench/out/learning_curve.json`` and ``.png``.

``--smoke``: the first 6 test items, 2 folds, the default rule only (``keep: not-run``), re-trained at 50% (2
corrections per fold: the least that re-trains), written to ``bench/out/smoke/learning_curve/``; the same last
line, figures meaningless.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402

log = logging.getLogger("bench.learning_curve")
SHARES = (0.0, 0.10, 0.25, 0.50)
RULES = ("drop", "keep")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="offline")
    p.add_argument("--splits", default="test,dev", help="comma-separated shipped splits (default: test,dev)")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--limit", type=int, help="use the first N items of the splits only (a quick run)")
    p.add_argument("--rules", default=",".join(RULES), help="demos.same_caption rules to compare (default: drop,keep)")
    p.add_argument("--retrain-shares", default="0.5",
                   help="shares at which the mapper is also re-trained from the corrections, comma-separated, "
                        "among 0.1,0.25,0.5 (default: 0.5)")
    p.add_argument("--no-retrain", action="store_true", help="in-context corrections only (a quick look)")
    p.add_argument("--ceiling", action="store_true",
                   help="only count the held-out cases whose entity another fold's case has, and link those "
                        "with no correction stored (a minute)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    if args.smoke:  # the default rule on 6 items: at 50%, 2 corrections per fold, enough to re-train on
        args.splits, args.limit, args.folds, args.rules = "test", 6, 2, "drop"
        args.retrain_shares, args.no_retrain, args.out = "0.5", False, str(smoke_out("learning_curve"))
    return args


def retrain_shares(text: str, no_retrain: bool = False) -> tuple[float, ...]:
    """The shares of ``--retrain-shares`` (none with ``--no-retrain``); refuses a share the curve does not have
    or 0 (nothing to re-train on)."""
    if no_retrain:
        return ()
    try:
        shares = tuple(sorted({float(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise SystemExit(f"--retrain-shares {text!r}: give shares such as 0.5 or 0.25,0.5") from None
    bad = [x for x in shares if x not in SHARES or x == 0.0]
    if bad:
        raise SystemExit(f"--retrain-shares {text!r}: {bad[0]} is not one of {', '.join(map(str, SHARES[1:]))}")
    return shares


@dataclass(frozen=True)
class Retrained:
    """One fold's re-training at one share: right links of the held-out items with the old mapper (in context
    only), with the re-trained mapper, and with what the app would serve (the gate's choice)."""

    share: float
    held: int  # held-out items linked
    old: int  # right with the old mapper and the in-context corrections
    new: int | None  # right with the re-trained mapper and the in-context corrections (None: not re-trained)
    accepted: bool  # the gate swapped the re-trained mapper in
    reason: str  # the gate's sentence, or why re-training did not start
    seconds: float = 0.0
    n_train: int = 0
    n_gate: int = 0  # held-out decisions + test examples the gate judged on

    @property
    def served(self) -> int:
        """Right links of what the app would serve: the re-trained mapper if accepted, else the old one."""
        return self.new if self.accepted and self.new is not None else self.old


def pool_retrained(points: Sequence[Retrained], share: float) -> dict[str, Any]:
    """The folds' re-trainings at ``share`` pooled: held-out items, right with the old, the re-trained and the
    served mapper, and in how many folds the gate accepted (``new`` is None if any fold could not re-train)."""
    pts = [p for p in points if p.share == share]
    news = [p.new for p in pts]
    return {"share": share, "n": sum(p.held for p in pts), "old": sum(p.old for p in pts),
            "new": None if not pts or None in news else sum(news), "served": sum(p.served for p in pts),
            "accepted": sum(p.accepted for p in pts), "folds": len(pts),
            "seconds": sum(p.seconds for p in pts)}


def retrained_figures(pooled: dict[str, Any] | None, suffix: str = "") -> str:
    """The last line's re-training part: ``retrained=<accuracy> served=<accuracy> gate=<accepted>/<folds>``
    (each key followed by ``suffix``), or ``retrained=not-yet`` when nothing was re-trained."""
    if not pooled or not pooled["folds"] or not pooled["n"]:
        return f"retrained{suffix}=not-yet"
    n = pooled["n"]
    new = "failed" if pooled["new"] is None else f"{pooled['new'] / n:.3f}"
    return (f"retrained{suffix}={new} served{suffix}={pooled['served'] / n:.3f} "
            f"gate{suffix}={pooled['accepted']}/{pooled['folds']}")


def _order(ex: Any) -> str:
    return hashlib.sha256(str(ex.id).encode()).hexdigest()  # a fixed shuffle, the same on every machine


def folds(items: list[Any], k: int) -> list[tuple[list[Any], list[Any]]]:
    """(held out, the others) per fold; the others in a fixed shuffled order (their first p% are corrected)."""
    ordered = sorted(items, key=_order)
    return [([x for i, x in enumerate(ordered) if i % k == f], [x for i, x in enumerate(ordered) if i % k != f])
            for f in range(k)]


def shared_entities(items: list[Any], k: int) -> list[Any]:
    """The held-out cases whose (non-NIL) entity some case of the others has, over all folds: the only cases a
    correction of *another* item can answer by the exact entity (a demonstration of it, the picture memory);
    every other case can gain only from what the model learns in general (re-training)."""
    return [x for held, others in folds(items, k) for x in held
            if x.entity and x.entity in {o.entity for o in others}]


def _right(linker: Any, held: list[Any]) -> int:
    return sum(linker.link(ex.image, ex.text, ex.mention).entity == ex.entity for ex in held)


def run_point(linker: Any, held: list[Any], corrections: list[Any], gate_test: list[Any] | None = None,
              share: float = 0.0) -> tuple[int, Retrained | None]:
    """Correct ``corrections`` in a fresh store (one annotator), then count right links of ``held``; with
    ``gate_test`` also re-train the mapper from the store's decisions (see `retrain_point`)."""
    from annotations import Store
    from annotations.loop import CorrectionLoop

    variant = linker.replace(pool=linker.labelled_pool.with_examples())
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "gemel.db") as store:
        loop = CorrectionLoop(store, variant)
        for ex in corrections:
            decision = "search" if ex.entity else "nil"
            loop.record("bench", decision, ex.entity, text=ex.text, mention=ex.mention, image=ex.image)
        right = _right(variant, held)
        if gate_test is None:
            return right, None
        return right, retrain_point(variant, store, held, gate_test, right, share, Path(tmp) / "retrain")


def retrain_point(variant: Any, store: Any, held: list[Any], gate_test: list[Any], right: int, share: float,
                  out: Path) -> Retrained:
    """Re-train ``variant``'s mapper from ``store``'s decisions as the app does (`demo.retrain_job`: the gold
    examples, NIL included, the default `RetrainConfig`, the gate judged on ``gate_test``), then count right links
    of ``held`` with the re-trained mapper (and the same in-context corrections). ``right``: the old mapper's."""
    from annotations.validation import ENTITY_DECISIONS
    from gemel.training.retrain import RetrainConfig, RetrainError, retrain
    from gemel.types import Example

    examples = [Example.from_dict(d) for d in store.training_examples((*ENTITY_DECISIONS, "nil"))]
    t0 = time.perf_counter()
    try:
        result = retrain(variant, examples, out, RetrainConfig(), test_examples=gate_test)
    except RetrainError as e:
        log.warning("no re-training at %.0f%%: %s", 100 * share, e)
        return Retrained(share, len(held), right, None, False, str(e), time.perf_counter() - t0)
    # accepted: what the app swaps in (`RetrainResult.adopt`); refused: the candidate's mapper on the same pool
    retrained = result.adopt(variant) if result.accepted else variant.replace(mapper=result.candidate.mapper)
    new = _right(retrained, held)
    log.warning("re-trained at %.0f%% on %d decisions in %.0f s: %s; held-out %d -> %d of %d", 100 * share,
                result.n_train, result.seconds, result.reason, right, new, len(held))
    return Retrained(share, len(held), right, new, result.accepted, result.reason, time.perf_counter() - t0,
                     result.n_train, result.n_held_out + result.n_test)


def curve(linker: Any, items: list[Any], k: int, rule: str,
          retrain_at: Sequence[float] = ()) -> tuple[dict[float, int], list[Retrained]]:
    """Right links per share, pooled over the ``k`` folds, and the re-trainings at the shares ``retrain_at``
    (the gate judged on the fold's other items that were not corrected)."""
    from tqdm import tqdm

    variant = linker.replace(config=linker.config.replace(demos={"same_caption": rule}))
    right = {s: 0 for s in SHARES}
    retrained: list[Retrained] = []
    bar = tqdm(total=len(SHARES) * len(items), desc=f"same_caption={rule}", unit="link", file=sys.stderr)
    for f, (held, others) in enumerate(folds(items, k)):
        for share in SHARES:
            cut = round(share * len(others))
            ok, point = run_point(variant, held, others[:cut], others[cut:] if share in retrain_at else None, share)
            log.warning("same_caption=%s fold %d, %d corrections: %d of %d right", rule, f, cut, ok, len(held))
            right[share] += ok
            retrained += [point] if point is not None else []
            bar.update(len(held))
    bar.close()
    return right, retrained


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = sorted(set(rules) - set(RULES))
    if unknown or "drop" not in rules:
        raise SystemExit(f"--rules {args.rules!r}: give 'drop' (the default rule), optionally with 'keep'")
    from gemel.data.metrics import wilson_interval
    from gemel.kb.demonstrations import load_jsonl_examples
    from gemel.linker import Linker

    items = [ex for split in args.splits.split(",")
             for ex in load_jsonl_examples(ROOT / "assets" / "eval" / f"{split}.jsonl", split)]
    items = items[: args.limit] if args.limit else items
    shared = shared_entities(items, args.folds)
    print(f"{len(shared)} of {len(items)} held-out cases have their entity among the other fold's cases "
          f"({', '.join(sorted({x.entity for x in shared})) or 'none'}): the most corrections of other items can "
          "answer by entity; at 50% about half of those are stored")
    at = retrain_shares(args.retrain_shares, args.no_retrain)
    linker = Linker.load(args.profile)
    if args.ceiling:
        print(f"of those, {_right(linker, shared)}/{len(shared)} are right with no correction stored at all")
        return 0
    n = len(items)
    t0 = time.perf_counter()
    results = {rule: curve(linker, items, args.folds, rule, at if rule == "drop" else ()) for rule in rules}
    rows, pooled = [], [pool_retrained(results["drop"][1], share) for share in at]
    for rule, (right, _) in results.items():
        for share, ok in right.items():
            lo, hi = wilson_interval(ok, n)
            rows.append({"rule": rule, "share": share, "right": ok, "n": n, "accuracy": ok / n, "ci": [lo, hi]})
            print(f"same_caption={rule:<5} corrections {share:4.0%} of the others: {ok}/{n} = {ok / n:.1%} "
                  f"(95% CI {lo:.1%}-{hi:.1%})")
    for p in results["drop"][1]:
        print(f"re-trained at {p.share:.0%} ({p.n_train} decisions trained on, {p.seconds:.0f} s): held-out "
              f"{p.old} -> {p.new} of {p.held}, gate {'accepted' if p.accepted else 'refused'}: {p.reason}")
    for row in pooled:
        for key in ("new", "served"):
            if row[key] is not None and n:
                lo, hi = wilson_interval(row[key], row["n"])
                row[f"{key}_ci"] = [lo, hi]
                print(f"same_caption=drop corrections {row['share']:4.0%}, {key + ' mapper':<14}: {row[key]}/{row['n']}"
                      f" = {row[key] / row['n']:.1%} (95% CI {lo:.1%}-{hi:.1%}; gate accepted in "
                      f"{row['accepted']} of {row['folds']} folds)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curve.json").write_text(json.dumps(
        {"items": n, "folds": args.folds, "splits": args.splits, "profile": args.profile, "rows": rows,
         "retrained": pooled, "retrain_folds": [asdict(p) for p in results["drop"][1]],
         "seconds": time.perf_counter() - t0}, indent=2))
    _plot(rows, out / "learning_curve.png", pooled)
    fig = {rule: " ".join(f"n{round(s * 100)}={right[s] / n:.3f}" for s in SHARES)
           for rule, (right, _) in results.items()}
    last = max(pooled, key=lambda r: r["share"]) if pooled else None
    extra = " ".join(retrained_figures(r, str(round(100 * r["share"]))) for r in pooled if r is not last)
    print(f"wrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")
    print(f"{fig['drop']} {retrained_figures(last)}{' ' + extra if extra else ''} keep: {fig.get('keep', 'not-run')}")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path, retrained: Sequence[dict[str, Any]] = ()) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for rule, style in zip(RULES, ("-o", "--s")):
        pts = [r for r in rows if r["rule"] == rule]
        if not pts:
            continue
        xs = [100 * r["share"] for r in pts]
        ax.plot(xs, [100 * r["accuracy"] for r in pts], style, label=f"demos.same_caption = {rule}")
        ax.fill_between(xs, [100 * r["ci"][0] for r in pts], [100 * r["ci"][1] for r in pts], alpha=0.12)
    for key, marker, color, label in (("new", "*", "tab:red", "re-trained mapper + in-context (drop)"),
                                      ("served", "D", "tab:green", "served after the gate (drop)")):
        pts = [r for r in retrained if r.get(key) is not None and r["n"]]
        if not pts:
            continue
        xs = [100 * r["share"] + (1.0 if key == "served" else 0.0) for r in pts]  # side by side when equal
        ys = [100 * r[key] / r["n"] for r in pts]
        err = [[y - 100 * r[f"{key}_ci"][0] for y, r in zip(ys, pts)],
               [100 * r[f"{key}_ci"][1] - y for y, r in zip(ys, pts)]]
        gate = ", ".join(f"gate {r['accepted']}/{r['folds']}" for r in pts)
        ax.errorbar(xs, ys, yerr=err, fmt=marker, color=color, markersize=11 if marker == "*" else 7, capsize=3,
                    label=f"{label}, {gate}" if key == "served" else label)
    ax.set_xlabel("share of the other items stored as corrections (%)")
    ax.set_ylabel("accuracy on held-out items (%)")
    ax.set_title(f"Learning curve of the correction loop (n = {rows[0]['n']}, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    raise SystemExit(main())

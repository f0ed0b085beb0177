"""The rule the ranker replaced (the fused score and its gates) against the learned ranker, on data the ranker never
saw. That rule is deleted; its answers were recorded before (``bench/reference/fused_rule.json``, at commit
1a4f117) and make the "rule today" column, n/a where the record does not hold a set (smoke runs, changed data).

    python bench/ranker.py [--profile offline] [--folds 5] [--ranker PATH] [--smoke]
    python bench/ranker.py --ranker gemel/assets/models/ranker.json    # the shipped one

Training data (``--ranker`` absent: the ranker is fitted here, as ``gemel fit-ranker`` does, sharing its cache
of gathered features): the seed pool, ``assets/eval/dev.jsonl``, ``assets/eval/outpool.jsonl`` and, when the
image corpus is built, captioned and stored (``--annotations``, default ``data/corpus-dev.db``: the commands are
in docs/RANKER.md), its dev captions as stored decisions: pictures the image scorer never trained on, half of
them captioned so that only the picture names the entity, each linked with the others loaded (so the ranker
learns how far to trust a labelled picture or caption that looks alike). Measured, in this order:

1. **CV**: the ranker's out-of-fold accuracy over its training data (``ranker_cv``), and on dev alone beside the
   rule's recorded dev accuracy; with the style fold (a scorer trained without Twemoji,
   ``--fold-scorer``, and ``style-dev``/``style-mismatched``/``groups-dev.jsonl`` from ``gemel corpus captions
   --hold-out-style twemoji``), those captions are training data too, linked with that scorer, and two more dev
   rows compare the rule (with that scorer) and the ranker out of fold: captions on pictures in an art style the
   scorer never saw, and dev's same-caption groups. ``--dev-only`` stops here, before any held-out set is read;
2. **test, read once at the end**: ``assets/eval/test.jsonl`` linked by the rule and by the ranker; real photos
   whose picture is in the seed pool or the ranker's training data (in-pool) and the others (out-of-pool)
   apart; NIL F1 over the test's NIL mentions; the ranker's link p50;
3. with the corpus captions: its test flags in an art style never trained on (only the picture decides) and its
   test same-caption groups (a group counts when every picture is right), rule and ranker; else ``n/a``;
4. with the Tux Paint photos (``make stamps``: ``stamps-dev.jsonl`` is then training data): ``stamps-test.jsonl``,
   real photos of entities no fitting data holds, apart by whether the caption names the entity, the ranker
   beside the LLM's first choice (no answer of the rule was recorded for them).

Features are gathered once per file and cached (as ``gemel fit-ranker`` does). Writes ``bench/out/ranker.json``
and ``docs/img/ranker.png``. Last line: ``rule_test= ranker_test= ranker_cv= groups= flags= photos_outpool=
nil_f1= link_p50_s=``.

``--smoke``: 4 examples per set, 2 folds, no corpus, everything under ``bench/out/smoke/ranker/``; the same last
line, figures meaningless.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench._machine import machine, machine_line  # noqa: E402
from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402
from gemel.data.metrics import PairedComparison, Score, paired_comparison  # noqa: E402
from gemel.kb.demonstrations import load_jsonl_examples  # noqa: E402
from gemel.rank.features import NAMES  # noqa: E402
from gemel.training.captions import HIDDEN_THING  # noqa: E402
from gemel.training.ranker import GATHER_VERSION, answer  # noqa: E402
from gemel.types import Example  # noqa: E402

SEED = ROOT / "gemel" / "assets" / "seed" / "examples.jsonl"
EVAL = ROOT / "assets" / "eval"
TRAIN_FILES = (SEED, EVAL / "dev.jsonl", EVAL / "outpool.jsonl")
EXTRA_TRAIN = ("mismatched", "stamps-dev")  # caption files of ``--captions`` that are fitting data when present
STYLE_ROW = "dev, unseen art style (ranker: out-of-fold)"
FOLD_STYLE = "twemoji"  # the art style the fold's scorer is trained without
FLAG_TEXT, FLAG_MENTION = "This is the flag of the country.", "the country"
# the answers of the rule the ranker replaced (the fused score and its gates), recorded before it was deleted
RULE_ANSWERS = ROOT / "bench" / "reference" / "fused_rule.json"


@dataclass
class Row:
    """One set of the comparison, item by item (a mention, or a same-caption group): whether the rule and the
    ranker got it right. The rule's side is None where no answer of it was recorded for this set."""

    ids: list[str]  # the items (example ids, or group ids)
    ranker: list[bool]  # the ranker right on each item
    rule: list[bool] | None  # the rule right on each item; None: no record

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def rule_score(self) -> Score | None:
        return None if self.rule is None else Score.of(sum(self.rule), self.n, 0.95)

    @property
    def rule_accuracy(self) -> float:
        return float("nan") if self.rule is None else self.rule_score.accuracy

    @property
    def ranker_score(self) -> Score:
        return Score.of(sum(self.ranker), self.n, 0.95)

    @property
    def paired(self) -> PairedComparison | None:
        return None if self.rule is None else paired_comparison(self.rule, self.ranker)

    def to_dict(self) -> dict[str, Any]:
        score, paired = self.ranker_score, self.paired
        return {"rule": None if self.rule is None else self.rule_accuracy, "ranker": score.accuracy, "n": self.n,
                "ranker_ci": [score.ci_low, score.ci_high], "paired": paired.to_dict() if paired else None,
                "items": {"ids": self.ids, "ranker_right": self.ranker, "rule_right": self.rule}}


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def examples_of(path: Path, limit: int | None) -> list[Example]:
    return load_jsonl_examples(path, path.stem)[:limit]


def gathered(gather: Any, examples: list[Example], name: str, cache: Path, **tags: Any) -> tuple[list, list[float]]:
    """(groups, link seconds) of examples linked by the gathering variant; cached by their content."""
    from gemel.training.ranker import group_of, read_groups, write_groups

    key = hashlib.sha256(json.dumps([[e.to_dict() for e in examples], gather.config.to_dict(), NAMES,
                                     GATHER_VERSION],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache / f"{name}-{key}.jsonl"
    times_path = path.with_suffix(".times.json")
    if path.is_file() and times_path.is_file():
        return read_groups(path), json.loads(times_path.read_text())
    from tqdm import tqdm

    groups, times = [], []
    for ex in tqdm(examples, desc=name, unit="mention", file=sys.stderr):
        t0 = time.perf_counter()
        pred = gather.link(ex.image, ex.text, ex.mention, exclude=[ex.id] if ex.id else [])
        times.append(time.perf_counter() - t0)
        groups.append(group_of(ex, pred, **tags, **ex.meta))
    write_groups(groups, path)
    times_path.write_text(json.dumps(times))
    return groups, times


def gathered_file(gather: Any, path: Path, name: str, cache: Path | None, limit: int | None) -> list:
    """The groups of a whole data file, through `gemel fit-ranker`'s cache (shared with it); a smoke run's first
    ``limit`` examples through the bench's own."""
    from gemel.cli.rank import groups_of_file

    if limit is not None:
        return gathered(gather, examples_of(path, limit), name, cache or Path("."), split=name)[0]
    groups = groups_of_file(gather, path, None, progress=True)
    for g in groups:
        g.tags["split"] = name
    return groups


def rule_answers(split: str, examples: list[Example]) -> list[str | None] | None:
    """The answers of the rule the ranker replaced, as recorded before it was deleted (:data:`RULE_ANSWERS`), or
    None when an example of this split is not in the record as it is here (another id, mention or gold entity)."""
    recorded = json.loads(RULE_ANSWERS.read_text())["answers"].get(split, {})
    rows = [recorded.get(e.id) for e in examples]
    if not examples or any(r is None or r[:2] != [e.mention, e.entity] for r, e in zip(rows, examples)):
        return None
    return [r[2] for r in rows]


def ranker_answers(ranker: Any, groups: list) -> list[str | None]:
    return [answer(g, ranker.probabilities(g.x), ranker.nil_below) if len(g.titles) else None for g in groups]


def nil_f1(answers: list[str | None] | None, examples: list[Example]) -> float | None:
    gold = [e.entity is None for e in examples]
    if answers is None or not any(gold):
        return None
    said = [a is None for a in answers]
    hits = sum(g and s for g, s in zip(gold, said))
    precision, recall = hits / max(1, sum(said)), hits / sum(gold)
    return 2 * precision * recall / (precision + recall) if hits else 0.0


def corpus_sets(folder: Path, limit: int | None) -> dict[str, list[Example]] | None:
    """The corpus captions ``gemel corpus captions --out data/captions --hidden 0.5`` wrote: the test split's
    same-caption groups and its flags in an art style never trained on; None when absent."""
    if not (folder / "groups.jsonl").is_file():
        return None
    groups = [Example(m["text"], m["mention"], m["entity"], m["image"], m["id"], "groups", {"group": g["group"]})
              for line in (folder / "groups.jsonl").read_text().splitlines() if line.strip()
              for g in [json.loads(line)] for m in g["members"]]
    flags = [Example(FLAG_TEXT, FLAG_MENTION, d["entity"], d["image"], d["id"], "flags")
             for line in (folder / "flags.jsonl").read_text().splitlines() if line.strip() for d in [json.loads(line)]]
    return {"groups": groups[:limit], "flags": flags[:limit]}


def stamp_rows(gather: Any, ranker: Any, examples: list[Example], cache: Path) -> dict[str, Row]:
    """The Tux Paint photos of entities that no fitting data holds, apart by whether the caption names the entity.
    No answer of the deleted rule was recorded for them: the "rule" column holds the LLM's first choice among the
    candidates instead (GEMEL's own answer)."""
    g, _ = gathered(gather, examples, "stamps-test", cache, split="stamps-test")
    llm = NAMES.index("llm_sum")
    first = [grp.titles[int(np.argmax(grp.x[:, llm]))] if len(grp.titles) else None for grp in g]
    ranked = ranker_answers(ranker, g)
    rows = {}
    for label, hidden in (("names it", False), ("names nothing", True)):
        idx = [i for i, e in enumerate(examples) if (e.mention == HIDDEN_THING[1]) == hidden]
        rows[f"Tux Paint photos, caption {label} (rule: LLM's first)"] = pair(first, ranked, examples, idx)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="offline")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--ranker", help="evaluate this artifact instead of fitting one here (its data must not hold "
                                    "the test split)")
    p.add_argument("--captions", default="data/captions", help="the folder `gemel corpus captions --out DIR "
                                                               "--hidden 0.5` wrote (default data/captions)")
    p.add_argument("--annotations", default="data/corpus-dev.db", help="a store of the corpus's dev captions as "
                                                                        "decisions (docs/RANKER.md), ranker data")
    p.add_argument("--fold-scorer",
                   help="an image scorer trained without one art style (`gemel corpus train-projection "
                        "--hold-out-style twemoji`): with it, the style-dev and groups-dev captions are ranker data "
                        "and dev rows (default: the default corpus's, when trained)")
    p.add_argument("--dev-only", action="store_true", help="cross-validation and the dev rows only: no held-out "
                                                                "set is read (last line rule_dev= ranker_dev= "
                                                                "ranker_cv= style_dev_rule= style_dev_ranker=)")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    limit = 4 if args.smoke else None
    folds = 2 if args.smoke else args.folds
    out = smoke_out("ranker") if args.smoke else ROOT / "bench" / "out"
    cache = out / "ranker-groups"
    cache.mkdir(parents=True, exist_ok=True)

    from gemel.linker import Linker
    from gemel.rank.model import Ranker, load_ranker
    from gemel.training.ranker import choose_by_cv, fit_with_cv

    base = Linker.load(args.profile, rank={"model": ""})  # gathers as every fit does (the ranker decides nothing)
    gather = base.replace(ranker=Ranker.uniform())
    ran_on = machine(base.config.llm.dtype)
    print(machine_line(ran_on), flush=True)
    corpus = None if args.smoke else corpus_sets(ROOT / args.captions, limit)
    files = list(TRAIN_FILES)
    train_sets = {f.stem: examples_of(f, limit) for f in files}
    groups = {name: gathered_file(gather, f, name, cache if args.smoke else None, limit)
              for name, f in zip(train_sets, files)}
    for name in EXTRA_TRAIN:  # named mentions beside another entity's picture; the Tux Paint photos' dev half
        extra = ROOT / args.captions / f"{name}.jsonl"
        if not args.smoke and extra.is_file():
            files.append(extra)
            train_sets[name] = examples_of(extra, limit)
            groups[name] = gathered_file(gather, extra, name, None, limit)
    fold_scorer = Path(args.fold_scorer) if args.fold_scorer else fold_artifact(args.profile)
    fold = style_fold(base, ROOT / args.captions, fold_scorer) if not args.smoke else None
    if fold is not None:  # captions in an art style the fold's scorer never saw, linked with that scorer
        fold_gather = fold.linker.replace(ranker=Ranker.uniform())
        for name, f in fold.files.items():
            train_sets[name] = examples_of(f, limit)
            groups[name] = gathered_file(fold_gather, f, name, None, limit)
            files.append(f)
    store = ROOT / args.annotations
    if not args.smoke and store.is_file():  # the corpus's dev captions as stored decisions (docs/RANKER.md)
        from gemel.cli.eval import examples_from_store
        from gemel.cli.rank import groups_of_store

        groups["corpus-dev"] = groups_of_store(gather, str(store), True)
        for g in groups["corpus-dev"]:
            g.tags["split"] = "corpus-dev"
        train_sets["corpus-dev"] = examples_from_store(str(store))
        files.append(store)
    training = [g for gs in groups.values() for g in gs]

    # 1. cross-validation (training data only) and the rule on dev
    cv = choose_by_cv(training, k=folds)
    dev = train_sets["dev"]
    dev_row = pair(rule_answers("dev", dev), out_of_fold(training, cv, dev), dev, range(len(dev)))
    fold_rows = fold_figures(fold, training, cv, train_sets) if fold is not None else {}
    if args.dev_only:  # decide on these (the default switch, a model family) before any held-out set is read
        rows = {"dev (ranker: out-of-fold)": dev_row, **fold_rows}
        print(table(rows, None, None))
        style = fold_rows.get(STYLE_ROW)
        print(f"rule_dev={_fig(dev_row.rule_accuracy)} ranker_dev={dev_row.ranker_score.accuracy:.3f} "
              f"ranker_cv={cv.accuracy:.3f} style_dev_rule={_fig(style.rule_accuracy if style else np.nan)} "
              f"style_dev_ranker={_fig(style.ranker_score.accuracy if style else np.nan)}")
        return 0
    ranker = load_ranker(args.ranker) if args.ranker else fit_with_cv(training, [str(f) for f in files], folds)
    ranker.save(out / "ranker.json")

    # 2. test, read once, now that the ranker is fixed
    test = examples_of(EVAL / "test.jsonl", limit)
    test_groups, times = gathered(gather, test, "test", cache, split="test")
    rule_test, ranker_test = rule_answers("test", test), ranker_answers(ranker, test_groups)
    seen = {sha(e.image) for exs in train_sets.values() for e in exs if e.image and Path(e.image).is_file()}
    outpool = [i for i, e in enumerate(test) if e.image and sha(e.image) not in seen]
    inpool = [i for i, e in enumerate(test) if e.image and sha(e.image) in seen]
    rows = {"dev (ranker: out-of-fold)": dev_row,
            "test": pair(rule_test, ranker_test, test, range(len(test))),
            "test photos in-pool": pair(rule_test, ranker_test, test, inpool),
            "test photos out-of-pool": pair(rule_test, ranker_test, test, outpool), **fold_rows}

    # 3. the corpus's flags and same-caption groups
    figures = {"groups": "n/a", "flags": "n/a"}
    if corpus is not None:
        for name in ("flags", "groups"):
            g, _ = gathered(gather, corpus[name], name, cache, split=name)
            r, k = rule_answers(name, corpus[name]), ranker_answers(ranker, g)
            label = "same-caption groups (all right)" if name == "groups" else "flags, unseen art style"
            rows[label] = (group_row(r, k, corpus[name]) if name == "groups"
                           else pair(r, k, corpus[name], range(len(corpus[name]))))
            figures[name] = f"{rows[label].ranker_score.accuracy:.3f}"
    stamps_test = ROOT / args.captions / "stamps-test.jsonl"  # `make stamps`
    if not args.smoke and stamps_test.is_file():
        rows.update(stamp_rows(gather, ranker, examples_of(stamps_test, limit), cache))
    nil_rule, nil_ranker = nil_f1(rule_test, test), nil_f1(ranker_test, test)
    report = {"rows": {k: v.to_dict() for k, v in rows.items()},
              "ranker_cv": cv.accuracy, "cv_kind": cv.kind, "cv_by_kind": cv.by_kind, "cv_by_l2": cv.logit.by_l2,
              "l2": cv.logit.l2, "nil_below": ranker.nil_below, "ranker_version": ranker.version,
              "nil_f1": {"rule": nil_rule, "ranker": nil_ranker}, "link_p50_s": float(np.median(times)),
              "weights": dict(zip(NAMES, ranker.weights.round(4).tolist())) if hasattr(ranker, "weights") else None,
              "photo_weights": (dict(zip(NAMES, ranker.photo_weights.round(4).tolist()))
                                if getattr(ranker, "photo_weights", None) is not None else None),
              "test_read": "once, after the ranker was fixed", "machine": ran_on}
    (out / "ranker.json").with_name("ranker_report.json").write_text(json.dumps(report, indent=1))
    print(table(rows, nil_rule, nil_ranker))
    if not args.smoke:
        plot(rows, ROOT / "docs" / "img" / "ranker.png")
    nil = "n/a" if nil_ranker is None else f"{nil_ranker:.3f}"
    outpool_acc = rows["test photos out-of-pool"].ranker_score.accuracy
    print(f"rule_test={_fig(rows['test'].rule_accuracy)} ranker_test={rows['test'].ranker_score.accuracy:.3f} "
          f"ranker_cv={cv.accuracy:.3f} "
          f"groups={figures['groups']} flags={figures['flags']} photos_outpool={outpool_acc:.3f} "
          f"nil_f1={nil} link_p50_s={float(np.median(times)):.2f}")
    return 0


@dataclass
class StyleFold:
    """A linker with a scorer trained without one art style, and the captions it never saw."""

    linker: Any  # the profile's linker, its image scorer the fold's
    files: dict[str, Path]  # "style-dev" / "groups-dev" / "style-mismatched" -> the captions file


def fold_artifact(profile: str) -> Path:
    """Where `gemel corpus train-projection --hold-out-style twemoji` writes the fold's scorer."""
    from gemel.cli.corpus import default_corpus

    return default_corpus(profile) / f"image_scorer-without-{FOLD_STYLE}.pt"


def style_fold(base: Any, captions: Path, scorer: Path) -> StyleFold | None:
    """The style fold when its scorer and captions exist (docs/RANKER.md has the commands), else None."""
    files = {name: captions / f"{name}.jsonl" for name in ("style-dev", "groups-dev", "style-mismatched")}
    if not scorer.is_file() or not all(f.is_file() for f in files.values()):
        return None
    return StyleFold(base.replace(config=base.config.replace(image={"scorer": str(scorer)})), files)


def out_of_fold(training: list, cv: Any, examples: list[Example]) -> list[str | None]:
    """The cross-validation's out-of-fold answers for these training examples (found by split and id)."""
    split = {e.source for e in examples}
    where = {g.key: i for i, g in enumerate(training) if g.tags.get("split") in split}
    return [answer(training[where[e.id]], cv.probabilities[where[e.id]], cv.nil_below) for e in examples]


def fold_figures(fold: StyleFold, training: list, cv: Any, sets: dict[str, list[Example]]) -> dict[str, Row]:
    """Dev rows of the style fold: the rule (recorded, with the fold's scorer) against the ranker out of fold, on the
    held-out style's captions and on dev's same-caption groups (all pictures of a group right)."""
    rows = {}
    for name, label in (("style-dev", STYLE_ROW),
                        ("groups-dev", "dev same-caption groups, all right (out-of-fold)")):
        examples = sets[name]
        rule, ranker = rule_answers(name, examples), out_of_fold(training, cv, examples)
        if name == "style-dev":
            rows[label] = pair(rule, ranker, examples, range(len(examples)))
        else:
            ids = group_ids(fold.files[name])
            tagged = [Example(e.text, e.mention, e.entity, e.image, e.id, e.source, {"group": ids[e.id]})
                      for e in examples]
            rows[label] = group_row(rule, ranker, tagged)
    return rows


def group_ids(path: Path) -> dict[str, str]:
    """Example id -> same-caption group id of a groups-dev file (one member per line)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: r["group"] for r in rows}


def pair(rule: list | None, ranker: list, examples: list[Example], idx: Any) -> Row:
    """The row of the examples at ``idx``, from the rule's and the ranker's answers (entity titles or None)."""
    idx = list(idx)
    return Row([examples[i].id for i in idx], [ranker[i] == examples[i].entity for i in idx],
               None if rule is None else [rule[i] == examples[i].entity for i in idx])


def group_row(rule: list | None, ranker: list, examples: list[Example]) -> Row:
    """Same-caption groups, one item per group: right when every picture of the group is right."""
    by: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by.setdefault(e.meta["group"], []).append(i)

    def all_right(answers: list) -> list[bool]:
        return [all(answers[i] == examples[i].entity for i in idx) for idx in by.values()]

    return Row(list(by), all_right(ranker), None if rule is None else all_right(rule))


def table(rows: dict[str, Row], nil_rule: float | None, nil_ranker: float | None) -> str:
    """The comparison as a Markdown table: accuracies, the ranker's 95% Wilson interval, and where the two
    disagree (items only one of them got right, the exact McNemar p-value): the evidence a difference is real."""
    lines = ["| set | n | rule today | ranker | ranker 95% interval | only the rule right | only the ranker right "
             "| p (McNemar) |", "|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        score, paired = row.ranker_score, row.paired
        disagree = (f"{paired.only_first} | {paired.only_second} | {_p(paired.p_value)}" if paired
                    else "n/a | n/a | n/a")
        lines.append(f"| {name} | {row.n} | {_fig(row.rule_accuracy)} | {score.accuracy:.3f} | "
                     f"{score.ci_low:.3f}-{score.ci_high:.3f} | {disagree} |")
    if nil_rule is not None:
        lines.append(f"| NIL F1 (test) | | {nil_rule:.3f} | {nil_ranker:.3f} | | | | |")
    return "\n".join(lines)


def _p(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.3f}" if p >= 0.001 else "<0.001"


def _fig(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.3f}"


def plot(rows: dict[str, Row], path: Path) -> None:
    """Both rules' accuracy per set, each with its 95% Wilson interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    ys = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(names) + 1.2))
    for side, (label, colour, shift) in {"rule": ("rule today", "tab:gray", -0.2),
                                         "ranker": ("learned ranker", "tab:blue", 0.2)}.items():
        scores = [getattr(rows[n], f"{side}_score") for n in names]
        acc = [s.accuracy if s else np.nan for s in scores]
        err = np.array([[s.accuracy - s.ci_low, s.ci_high - s.accuracy] if s else [0, 0] for s in scores]).T
        ax.barh(ys + shift, acc, 0.4, xerr=err, label=label, color=colour, error_kw={"lw": 0.8, "capsize": 2})
    ax.set_yticks(ys, [f"{n} (n={rows[n].n})" for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="accuracy (bars: 95% Wilson interval)",
           title="rule today vs learned ranker (test read once)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

"""Ablation of GEMEL Studio's linker on the shipped test split: which part earns its accuracy?

GEMEL (Shi et al., LREC-COLING 2024) links with a frozen LLM prompted by n retrieved multimodal demonstrations
and a trained visual prefix, decoding over a prefix tree of the whole KB. The offline default adds candidate
retrieval (top K) and a learned ranker over every candidate's features because its LLM is small. This script measures, on ``assets/eval/test.jsonl``
and with one loaded linker (variants swap settings, not models):

- the embedding-lookup baseline (retrieval alone, no LLM);
- decoding: top-K teacher-forced candidates (the default) vs the paper's full-KB beam search (the ranker decides
  among the beams);
- demonstrations: none vs n=16 from the seed pool, from the KB-derived pool, or both (the default);
- the visual prefix: text-only vs the untrained mapper vs a trained mapper (``--mapper``);
- beams: 1 vs 5 in full-KB beam search.

Prints a markdown table with Wilson 95% intervals, writes ``bench/out/ablation.jsonl`` and
``bench/out/ablation.png`` (`gemel.data.plots.plot_ablation`).

    .venv/bin/python bench/ablation.py --limit 10                      # a quick look (~10 min on 2 cores)
    .venv/bin/python bench/ablation.py --mapper bench/out/runs/offline-seed/mapper.pt
    .venv/bin/python bench/ablation.py --smoke     # every variant on 1 example, to bench/out/smoke/ablation/

The last line is ``n=<examples>`` and each variant's accuracy by its key: ``baseline= reference= full-kb-5= n0=
seed-only= kb-only= text-only= untrained= full-kb-1=`` (``reference`` is the default linker, or the trained mapper
with ``--mapper``; fewer with ``--only``). ``--smoke``: the same line, figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402

log = logging.getLogger("bench.ablation")
OUT = ROOT / "bench" / "out"
KEEP = object()  # "leave this part of the linker as it is"


@dataclass(frozen=True)
class Variant:
    """One setting of the linker: profile sections to change and parts to swap."""

    key: str  # identifies the run (rows of several comparisons may share one)
    decode: dict[str, Any] = field(default_factory=dict)
    demos: dict[str, Any] = field(default_factory=dict)
    pool: str = "profile"  # "profile" (seed pool) or "empty" (no labelled demonstrations)
    mapper: str = "reference"  # "reference" (--mapper or the profile's), "untrained", "none" (text-only)
    baseline: bool = False


REFERENCE = Variant("reference")
FULL_KB = {"mode": "beam", "candidates": 0}
PLAN: list[tuple[str, str, Variant]] = [
    ("baseline", "embedding lookup (no LLM)", Variant("baseline", baseline=True)),
    ("decoding", "top-{K} candidates, the ranker decides (default)", REFERENCE),
    ("decoding", "full-KB beam search, 5 beams (paper)", Variant("full-kb-5", decode={**FULL_KB, "num_beams": 5})),
    ("demonstrations", "none (n=0)", Variant("n0", demos={"n": 0})),
    ("demonstrations", "n={n} seed pool only", Variant("seed-only", demos={"kb_demos": False})),
    ("demonstrations", "n={n} KB-derived only", Variant("kb-only", pool="empty")),
    ("demonstrations", "n={n} both (default)", REFERENCE),
    ("visual prefix", "text-only", Variant("text-only", mapper="none")),
    ("visual prefix", "untrained mapper", Variant("untrained", mapper="untrained")),
    ("visual prefix", "trained mapper", Variant("reference", mapper="trained")),  # = the reference run
    ("beams", "full KB, 1 beam", Variant("full-kb-1", decode={**FULL_KB, "num_beams": 1})),
    ("beams", "full KB, 5 beams", Variant("full-kb-5", decode={**FULL_KB, "num_beams": 5})),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="offline", help="profile name or .toml (default: offline)")
    p.add_argument("--data", default=str(ROOT / "assets" / "eval" / "test.jsonl"), help="labelled test data")
    p.add_argument("--limit", type=int, help="first N examples only (a quick run)")
    p.add_argument("--mapper", help="trained mapper checkpoint: the reference setting uses it")
    p.add_argument("--only", help="comma-separated comparison groups to run (default: all)")
    p.add_argument("--out", default=str(OUT), help="folder for ablation.jsonl and ablation.png")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    if args.smoke:  # every variant, on one example
        args.limit, args.out = 1, str(smoke_out("ablation"))
    return args


def variant(linker: Any, v: Variant, mappers: dict[str, Any]) -> Any:
    """A variant of ``linker`` with ``v``'s settings (`Linker.replace`: the loaded models are shared, the
    reference linker is never changed)."""
    sections = {k: s for k, s in (("decode", v.decode), ("demos", v.demos)) if s}
    config = linker.config.replace(**sections) if sections else None
    return linker.replace(config=config, pool=[] if v.pool == "empty" else None, mapper=mappers[v.mapper])


def load_mappers(linker: Any, trained: str | None) -> dict[str, Any]:
    from gemel.components import build_mapper

    untrained = build_mapper(linker.config.replace(mapper={"checkpoint": ""}), linker.lm, linker.vision)
    mappers = {"none": None, "untrained": untrained, "reference": linker.mapper}
    if trained:
        from gemel.models.mapper import FeatureMapper

        mappers["trained"] = FeatureMapper.load(trained, expected=linker.mapper.spec)
        mappers["reference"] = mappers["trained"]
    return mappers


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from gemel.data.evaluate import EvalOptions, evaluate_linker, load_examples
    from gemel.linker import Linker

    examples = load_examples(args.data, limit=args.limit)
    linker = Linker.load(args.profile)
    mappers = load_mappers(linker, args.mapper)
    groups = set(args.only.split(",")) if args.only else None
    done: dict[str, Any] = {}
    rows = []
    for group, name, v in PLAN:
        if (groups and group not in groups) or mappers.get(v.mapper, KEEP) is KEEP:
            continue  # not asked for, or no trained mapper given
        if v.key not in done:
            t0 = time.perf_counter()
            done[v.key] = evaluate_linker(variant(linker, v, mappers), examples, baseline=v.baseline,
                                          options=EvalOptions(progress=sys.stderr.isatty()))
            log.info("%s: %.3f in %.0f s", v.key, done[v.key].accuracy, time.perf_counter() - t0)
        d = linker.config
        name = name.format(K=d.decode.candidates, n=d.demos.n)
        rows.append(_row(group, name, v, done[v.key]))
        print(f"  {group:<15} {name:<40} {rows[-1]['accuracy']:.3f}", file=sys.stderr)
    return rows


def _row(group: str, name: str, v: Variant, result: Any) -> dict[str, Any]:
    r = result.report
    return {"group": group, "name": f"{group}: {name}", "setting": name, "key": v.key, "n": r.n,
            "accuracy": r.accuracy, "ci_low": r.ci[0], "ci_high": r.ci[1], "recall_at_5": r.recall_at_k.get(5),
            "seconds_per_mention": result.seconds / max(1, r.n), "mapper": result.info["mapper"]}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| comparison | setting | accuracy | 95% CI | recall@5 | s / mention |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        r5 = "" if r["recall_at_5"] is None else f"{r['recall_at_5']:.3f}"
        lines.append(f"| {r['group']} | {r['setting']} | {r['accuracy']:.3f} | [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
                     f"| {r5} | {r['seconds_per_mention']:.2f} |")
    return "\n".join(lines)


def last_line(rows: list[dict[str, Any]]) -> str:
    """``n=<examples>`` and the accuracy of each variant that ran, by its key (rows sharing a run, once)."""
    accuracy = {r["key"]: r["accuracy"] for r in rows}
    return f"n={rows[0]['n'] if rows else 0} " + " ".join(f"{k}={a:.3f}" for k, a in accuracy.items())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    rows = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "ablation.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    from gemel.data.plots import PlotConfig, plot_ablation

    plot_ablation(rows, out / "ablation.png", PlotConfig(width=1000, height=max(480, 48 * len(rows))))
    n = rows[0]["n"] if rows else 0
    print(f"\nAblation on {args.data} (n={n}), profile {args.profile!r}"
          f"{', trained mapper ' + args.mapper if args.mapper else ''}:\n")
    print(markdown(rows))
    print(f"\nwrote {out / 'ablation.jsonl'} and {out / 'ablation.png'}")
    print(last_line(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

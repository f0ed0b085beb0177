"""Record the offline default's answers on the shipped eval splits, for a no-behaviour-change check.

    python scripts/record_answers.py --out answers.json          # link dev, outpool and test
    python scripts/record_answers.py --compare a.json b.json     # identical answers and candidate lists?

Nothing is chosen from these answers: the file only says whether two versions of the code answer alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("dev", "outpool", "test")


def record(out: Path, limit: int | None) -> None:
    from gemel import Linker
    from gemel.data.evaluate import predict
    from gemel.kb.demonstrations import load_jsonl_examples

    linker = Linker.load("offline")
    answers = {}
    for split in SPLITS:
        examples = load_jsonl_examples(ROOT / "assets" / "eval" / f"{split}.jsonl", split)[:limit]
        preds = predict(linker, examples, desc=split)
        answers[split] = [{"id": ex.id, "entity": p.entity,
                           "top": [[c.name, round(c.score, 3)] for c in p.candidates[:5]]}
                          for ex, p in zip(examples, preds)]
    out.write_text(json.dumps(answers, indent=1))
    print(f"wrote {out}: " + " ".join(f"{s}={len(answers[s])}" for s in SPLITS))


def compare(a: Path, b: Path) -> int:
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    differ = [(s, x["id"]) for s in SPLITS for x, y in zip(left[s], right[s]) if x != y]
    for split, ident in differ:
        print(f"differs: {split} {ident}")
    same = sum(len(left[s]) for s in SPLITS) - len(differ)
    print(f"identical={same} differ={len(differ)}")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write the answers here")
    p.add_argument("--limit", type=int, help="first N examples of each split")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two recorded files")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if not args.out:
        p.error("give --out FILE or --compare A B")
    record(args.out, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())

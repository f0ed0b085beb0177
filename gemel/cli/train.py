"""``gemel train``: train a profile's feature mapper (see `gemel.training.train`); registered by `gemel.cli.main`.

    gemel train --profile offline --data gemel/assets/seed/examples.jsonl --dev assets/eval/dev.jsonl \\
        --epochs 3 --out runs/seed
    accelerate launch -m gemel train --profile paper --data train.json --features clip.hdf5 --out runs/wd
    gemel train --profile paper --data Wikidata-MEL.json --split splits.json:train \
        --dev Wikidata-MEL.json --dev-split splits.json:dev --out runs/wikimel
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the feature mapper (the LLM and the vision encoder stay frozen)",
                       description="Train GEMEL's feature mapper on labelled mentions; writes OUT/mapper.pt, "
                                   "OUT/log.jsonl and OUT/training.png. Runs under `accelerate launch`.")
    p.add_argument("--profile", default="offline", help="profile name or .toml path (default: offline)")
    p.add_argument("--data", action="append", default=[], metavar="FILE",
                   help="training data (our JSONL, GEMEL, WikiDiverse, WikiMEL or Richpedia-MEL); repeat for "
                        "several files")
    p.add_argument("--format", default="auto", help="format of --data/--dev (default: auto-detect): jsonl, gemel, "
                                                    "wikidiverse, wikimel, richpedia")
    p.add_argument("--split", metavar="FILE:NAME", help="train on one split of the --data file(s), named in a split "
                   "file, e.g. splits.json:train (MEL-GHMFC's official split of the original WikiMEL release)")
    p.add_argument("--annotations", metavar="DB", help="also train on the decided examples of this store")
    p.add_argument("--dev", metavar="FILE", help="dev data: accuracy after every epoch, picks mapper.pt")
    p.add_argument("--dev-split", metavar="FILE:NAME", help="use one split of the --dev file, e.g. splits.json:dev")
    p.add_argument("--judge", metavar="TEST", help="with --annotations only: re-train as the app does, holding out a "
                   "share of the decisions, and say whether the new part is better (held-out accuracy not worse for "
                   "the ranker, strictly better for the mapper; accuracy on TEST, e.g. assets/eval/test.jsonl, not "
                   "worse)")
    p.add_argument("--part", choices=("ranker", "mapper"), default="ranker",
                   help="with --judge: what to re-train, the ranker that decides (seconds, as the app's Data tab) or "
                        "the feature mapper (gradient steps)")
    p.add_argument("--image-dir", help="folder of the data's images (default: next to the data file)")
    p.add_argument("--features", metavar="HDF5", help="precomputed image features (GEMEL's CLIP hdf5 file)")
    p.add_argument("--out", required=True, help="run folder to write (mapper.pt, log.jsonl, training.png)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--mapper", help="start from this mapper checkpoint instead of the profile's")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a profile value, e.g. --set demos.seed_pool='\"\"' --set kb.source=DIR")
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="share of steps warming up (default 0.1)")
    p.add_argument("--grad-accum", type=int, default=8, help="examples per optimizer step (default 8)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--limit", type=int, help="train on the first N examples only")
    p.add_argument("--dev-limit", type=int, help="evaluate on the first N dev examples only")
    p.add_argument("--no-eval-before", action="store_true", help="skip the dev evaluation before training")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from gemel.cli.eval import examples_from_store, profile_with
    from gemel.data.evaluate import check_images, load_examples, with_feature_keys, with_precomputed_features
    from gemel.linker import Linker
    from gemel.training.train import TrainConfig, TrainError, train

    config = TrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                         warmup_ratio=args.warmup_ratio, grad_accum=args.grad_accum,
                         max_grad_norm=args.max_grad_norm, seed=args.seed, dev_limit=args.dev_limit,
                         eval_before=not args.no_eval_before)
    if not args.data and not args.annotations:
        raise TrainError("give training data: --data FILE and/or --annotations DB")
    if args.resume and not Path(args.out, "trainer_state.pt").exists():
        raise TrainError(f"--resume: {args.out!r} holds no earlier run (trainer_state.pt is missing)")
    _check_splits(args)
    if args.judge:
        return _run_judged(args)
    examples = [ex for path in args.data for ex in load_examples(path, args.format, image_dir=args.image_dir,
                                                                 limit=args.limit, split=args.split)]
    n_data = len(examples)
    if args.annotations:
        examples += examples_from_store(args.annotations)
    dev = load_examples(args.dev, args.format, image_dir=args.image_dir, split=args.dev_split) if args.dev else []
    _report_data(examples, dev, split=args.split, dev_split=args.dev_split, n_data=n_data)
    linker = Linker.load(profile_with(args.profile, args.set, args.mapper))
    if args.features:
        linker, store = with_precomputed_features(linker, args.features)
        examples, dev = with_feature_keys(examples, store.features), with_feature_keys(dev, store.features)
    else:
        check_images(examples + list(dev))
    result = train(linker, examples, args.out, config, dev=dev, resume=args.resume)
    print(f"trained {result.trainable:,} of {result.total:,} parameters ({100 * result.trainable / result.total:.3f}%)"
          f" for {result.epochs_run} epoch(s), {result.steps} optimizer steps")
    if result.best_dev is not None:
        print(f"best dev accuracy {result.best_dev:.4f} at epoch {result.best_epoch}")
    print(f"mapper: {result.mapper_path}, version {result.version}  (use it with --mapper, or mapper.checkpoint in "
          "a profile)")
    return 0


def _run_judged(args: argparse.Namespace) -> int:
    """``--judge``: `gemel.training.retrain.retrain` on the store's decisions, with the test split given; prints the
    before/after figures and the verdict of the acceptance rule."""
    from gemel.cli.eval import examples_from_store, profile_with
    from gemel.data.evaluate import check_images, load_examples
    from gemel.linker import Linker
    from gemel.training.retrain import MapperPart, RetrainConfig, parts_for, retrain
    from gemel.training.train import TrainError

    if not args.annotations or args.data or args.resume or args.features:
        raise TrainError("--judge re-trains on the decisions of --annotations DB alone: drop --data, --resume "
                         "and --features")
    examples = examples_from_store(args.annotations, include_nil=True)
    test = load_examples(args.judge, args.format, image_dir=args.image_dir)
    check_images(examples + test)
    linker = Linker.load(profile_with(args.profile, args.set, args.mapper))
    config = RetrainConfig(epochs=args.epochs, lr=args.lr, grad_accum=args.grad_accum, seed=args.seed)
    parts = (MapperPart(),) if args.part == "mapper" else parts_for(linker)
    r = retrain(linker, examples, args.out, config, test_examples=test, parts=parts)
    print(f"trained on {r.n_train} decision(s); held-out decisions (n={r.n_held_out}): "
          f"{r.before.held_out:.1%} -> {r.after.held_out:.1%}; {args.judge} (n={r.n_test}): "
          f"{r.before.test:.1%} -> {r.after.test:.1%}")
    print(f"{'accepted' if r.accepted else 'not accepted'}: {r.reason}")
    print(f"{r.part}: {r.checkpoints[r.part]}, version {r.version}" + ("" if r.accepted else
          f"  (keep the profile's {r.part}, {r.previous[r.part]})"))
    return 0


def _check_splits(args: argparse.Namespace) -> None:
    """Refuse a split without the file it splits, and a split file that cannot be read, before any model loads."""
    from gemel.data.readers import read_split
    from gemel.training.train import TrainError

    for option, spec, target, given in (("--split", args.split, "--data", args.data),
                                        ("--dev-split", args.dev_split, "--dev", args.dev)):
        if spec and not given:
            raise TrainError(f"{option} {spec} splits the {target} file: give {target} too")
        if spec:
            read_split(spec)


def _report_data(examples: list, dev: list, *, split: str | None = None, dev_split: str | None = None,
                 n_data: int | None = None) -> None:
    """The training (and dev) data's counts, e.g. mentions not verbatim in their text, before training starts;
    with a split, its name and size first (counted over the first ``n_data`` examples: those of --data)."""
    from gemel.data.readers import read_split, summarize

    for name, data, chosen, of_split in (("training data", examples, split, examples[:n_data]),
                                         ("dev data", dev, dev_split, dev)):
        if data:
            head = f"{read_split(chosen).describe(of_split)}: " if chosen else ""
            print(f"{name}: {head}{summarize(data).line()}")

"""Re-training from people's decisions, so that corrections only ever help: fine-tune a *copy* of the trained
parts on the decisions, measure the serving linker and the candidate on the same data, keep the better one.

:func:`retrain` splits the decisions deterministically by input (a hash of the input's key and the seed) into a
training part and a held-out slice; NIL decisions teach nothing to train on and all go to the held-out slice.
It trains copies of the *trainable parts* in a variant of the linker, never the serving parts:
the learned ranker where the profile decides with one (:class:`gemel.training.ranker.RankerPart`: each decision
linked once, the ranker refitted with its first training data; seconds to minutes), else the feature mapper
(:class:`MapperPart`: gradient steps; :func:`parts_for` chooses). It then evaluates the serving linker and the
candidate on the held-out slice and on a test split (the shipped ``assets/eval/test.jsonl`` in the demo).

**The acceptance rule**: the candidate's held-out accuracy must be *strictly better* than the serving linker's for
the mapper (a fine-tuned copy must earn its place) and *not worse* for a refit ranker (the same model with more
data), and its test-split accuracy *not worse*. Otherwise the result says why, and the caller keeps its linker.
The caller swaps an accepted candidate in with :meth:`RetrainResult.adopt`, which gives the caller's (possibly
newer) linker the candidate's parts; nothing here ever changes the linker it was given.

The idea is the usual guard of continual learning with a human in the loop (train on feedback, gate the new
model on held-out data before deployment). This module knows nothing of the store or the UI: it takes
`Example`s; ``demo.retrain_job`` runs it in the background of the app, and
``gemel train --annotations DB --judge TEST`` from the command line.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from gemel.errors import GemelError
from gemel.types import Example

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)


class RetrainError(GemelError):
    """Re-training cannot start with these decisions or this linker; the message says why and what to do."""


@dataclass(frozen=True)
class RetrainConfig:
    epochs: int = 3  # passes over the training part of the decisions
    lr: float = 1e-4  # AdamW peak learning rate (see `gemel.training.train.TrainConfig`)
    grad_accum: int = 8  # examples per optimizer step
    held_out_share: float = 0.25  # share of the entity decisions kept out of training, to judge the candidate
    min_decisions: int = 2  # entity decisions needed at least: one to train on, one to judge on
    seed: int = 0  # the held-out split and the training order
    test_limit: int | None = None  # judge on the first N test examples only (None = the whole test split)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise RetrainError(f"epochs={self.epochs} must be >= 1")
        if not 0.0 < self.held_out_share < 1.0:
            raise RetrainError(f"held_out_share={self.held_out_share} must be in (0, 1), e.g. 0.25")
        if self.min_decisions < 2:
            raise RetrainError(f"min_decisions={self.min_decisions} must be >= 2 (one to train on, one to judge on)")
        if self.test_limit is not None and self.test_limit < 1:
            raise RetrainError(f"test_limit={self.test_limit} must be >= 1, or None for the whole test split")

    def train_config(self, cpu: bool) -> Any:
        """The `TrainConfig` of one part (no dev evaluation inside: the held-out slice judges afterwards)."""
        from gemel.training.train import TrainConfig

        return TrainConfig(epochs=self.epochs, lr=self.lr, grad_accum=self.grad_accum, seed=self.seed,
                           eval_before=False, cpu=cpu)


# ---- trainable parts ------------------------------------------------------------------------------------
class TrainablePart(Protocol):
    """One trained part of a linker, as re-training sees it."""

    name: str
    needs_gain: bool  # True: adopted only when held-out accuracy rises; False: when it does not fall

    def check(self, linker: Any) -> None:
        """Raise `RetrainError` when ``linker`` has no such part to train."""

    def copy(self, linker: Any) -> Any:
        """A variant of ``linker`` with a private copy of this part (``linker`` is unchanged)."""

    def fit(self, candidate: Any, examples: Sequence[Example], out_dir: Path, config: RetrainConfig,
            on_step: Callable[[int, int], None]) -> Path:
        """Train the candidate's copy in place; returns its checkpoint. ``on_step(done, total)`` reports steps."""

    def version(self, linker: Any) -> str:
        """The version of this part in ``linker`` (recorded with every prediction)."""

    def adopt(self, serving: Any, candidate: Any) -> Any:
        """A variant of ``serving`` with the candidate's part (``serving`` is unchanged)."""


class MapperPart:
    """The feature mapper (`gemel.models.mapper.FeatureMapper`), trained by `gemel.training.train.Trainer`."""

    name = "mapper"
    needs_gain = True  # a fine-tuned copy must beat the serving mapper on the held-out decisions

    def check(self, linker: Any) -> None:
        if linker.mapper is None:
            raise RetrainError(f"profile {linker.config.name!r} has no vision encoder, so it has no feature mapper "
                               "to re-train (choose a profile with vision.kind set)")

    def copy(self, linker: Any) -> Any:
        return linker.replace(mapper=copy.deepcopy(linker.mapper))

    def fit(self, candidate: Any, examples: Sequence[Example], out_dir: Path, config: RetrainConfig,
            on_step: Callable[[int, int], None]) -> Path:
        from gemel.training.train import Trainer

        total = math.ceil(len(examples) / config.grad_accum) * config.epochs  # optimizer steps

        def on_log(entry: dict[str, Any]) -> None:
            if "step" in entry and "loss" in entry:
                on_step(int(entry["step"]), total)

        with _devices_kept(candidate):
            trainer = Trainer(candidate, config.train_config(_serves_on_cpu(candidate)), out_dir, progress=False,
                              on_log=on_log)
            return trainer.fit(examples).mapper_path

    def version(self, linker: Any) -> str:
        return linker.mapper_version

    def adopt(self, serving: Any, candidate: Any) -> Any:
        return serving.replace(mapper=candidate.mapper)


DEFAULT_PARTS: tuple[TrainablePart, ...] = (MapperPart(),)


def parts_for(linker: Any) -> tuple[TrainablePart, ...]:
    """What a re-train from corrections fits: the ranker that decides (seconds: one link per decision). The
    feature mapper (gradient steps through the LLM) is fitted with ``gemel train`` or ``retrain(parts=...)``."""
    from gemel.training.ranker import RankerPart

    return (RankerPart(),)


def _serves_on_cpu(linker: Any) -> bool:
    """True when the shared LLM serves on the CPU while an accelerator is present: training must then stay on the
    CPU too (the trainer places the LLM on its device, and the serving linker uses the very same model)."""
    on_cpu = next(linker.lm.model.parameters()).device.type == "cpu"
    return on_cpu and (torch.cuda.is_available() or torch.backends.mps.is_available())


@contextmanager
def _devices_kept(linker: Any) -> Iterator[None]:
    """Put the shared networks back on their devices after training, whatever happened."""
    nets = [n for n in (linker.lm.model, linker.vision) if isinstance(n, torch.nn.Module)]
    devices = [next(n.parameters()).device for n in nets]
    try:
        yield
    finally:
        for net, device in zip(nets, devices):
            net.to(device)


# ---- the result -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scores:
    """Exact-match accuracy of one linker on the held-out slice and on the test split (None: no test split)."""

    held_out: float
    test: float | None


@dataclass
class RetrainResult:
    before: Scores  # the serving linker's
    after: Scores  # the candidate's
    accepted: bool  # the acceptance rule (module docstring) holds
    reason: str  # one sentence: why accepted or not
    versions: dict[str, str]  # part name -> the candidate's version
    previous: dict[str, str]  # part name -> the serving linker's version
    checkpoints: dict[str, Path]  # part name -> the candidate's checkpoint file
    n_train: int  # entity decisions trained on
    n_held_out: int  # decisions judged on (NIL ones included)
    n_test: int  # test examples judged on
    seconds: float
    out_dir: Path
    candidate: Any = field(default=None, repr=False)  # the candidate linker (shares the loaded models)
    parts: tuple[TrainablePart, ...] = field(default=DEFAULT_PARTS, repr=False)

    @property
    def version(self) -> str:
        """The candidate's version of its (first) part: what later predictions record once it is adopted."""
        return next(iter(self.versions.values()), "none")

    @property
    def part(self) -> str:
        """The name of the (first) part re-trained: "mapper" or "ranker"."""
        return next(iter(self.versions), "mapper")

    def adopt(self, serving: Any) -> Any:
        """``serving`` with the candidate's trained parts, for an accepted result; refused for a rejected one."""
        if not self.accepted:
            raise RetrainError(f"this candidate was not accepted ({self.reason}); keep the serving linker")
        for part in self.parts:
            serving = part.adopt(serving, self.candidate)
        return serving

    def to_dict(self) -> dict[str, Any]:
        return {"before": vars(self.before), "after": vars(self.after), "accepted": self.accepted,
                "reason": self.reason, "versions": self.versions, "previous": self.previous,
                "checkpoints": {k: str(v) for k, v in self.checkpoints.items()}, "n_train": self.n_train,
                "n_held_out": self.n_held_out, "n_test": self.n_test, "seconds": self.seconds,
                "out_dir": str(self.out_dir)}


# ---- checks, split, rule --------------------------------------------------------------------------------
def check_decisions(linker: Any, examples: Sequence[Example], config: RetrainConfig,
                    parts: Sequence[TrainablePart] = DEFAULT_PARTS) -> None:
    """Refuse, with one sentence, what cannot be re-trained: no trainable part, no decisions, only NIL
    decisions, fewer than ``config.min_decisions`` entity decisions."""
    for part in parts:
        part.check(linker)
    if not examples:
        raise RetrainError("there are no decisions to learn from yet: link some mentions and save decisions first")
    entities = [ex for ex in examples if ex.entity]
    if not entities:
        raise RetrainError(f"all {len(examples)} decisions are 'not in the KB', which teaches the model nothing: "
                           "save some decisions that name an entity first")
    if len(entities) < config.min_decisions:
        raise RetrainError(f"there are only {len(entities)} decision(s) naming an entity, fewer than the "
                           f"{config.min_decisions} needed (one to train on, one to judge on): save more decisions")


def split(examples: Sequence[Example], config: RetrainConfig) -> tuple[list[Example], list[Example]]:
    """(train, held out): the entity decisions ordered by a hash of their input (id, else content) and the
    seed, the first ``held_out_share`` (at least one, never all) held out; every NIL decision is held out."""
    entities = sorted((ex for ex in examples if ex.entity), key=lambda ex: _hash(ex, config.seed))
    k = min(len(entities) - 1, max(1, round(config.held_out_share * len(entities))))
    nil = [ex for ex in examples if not ex.entity]
    return entities[k:], entities[:k] + nil


def _hash(ex: Example, seed: int) -> str:
    key = ex.id if ex.id is not None else f"{ex.text}\x1f{ex.mention}\x1f{ex.image}"
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()


def decide(before: Scores, after: Scores, needs_gain: bool = True) -> tuple[bool, str]:
    """The acceptance rule: held-out accuracy strictly better (``needs_gain``, the mapper) or not worse (a refit
    ranker), and test accuracy not worse; and why."""
    held = f"held-out accuracy {_pct(before.held_out)} -> {_pct(after.held_out)}"
    if after.held_out < before.held_out or (needs_gain and after.held_out == before.held_out):
        return False, f"{held} did not improve" if needs_gain else f"{held} fell"
    if before.test is None or after.test is None:
        return True, f"{held} {_moved(before.held_out, after.held_out)} (no test split to check)"
    test = f"test accuracy {_pct(before.test)} -> {_pct(after.test)}"
    if after.test < before.test:
        return False, f"{held} {_moved(before.held_out, after.held_out)} but {test} fell"
    return True, f"{held} {_moved(before.held_out, after.held_out)} and {test} did not fall"


def _moved(before: float, after: float) -> str:
    return "improved" if after > before else "did not fall"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# ---- the job --------------------------------------------------------------------------------------------
class _Progress:
    """Maps the phases (judge before, train, judge after) to one fraction, in proportion to their work."""

    def __init__(self, cb: ProgressCallback | None, n_eval: int, n_train_steps: int) -> None:
        self.cb = cb
        eval_units, train_units = float(n_eval), 3.0 * n_train_steps  # a step: forward + backward ~ 3 links
        total = 2 * eval_units + train_units or 1.0
        a, b = eval_units / total, (eval_units + train_units) / total
        self.spans = {"before": (0.0, a), "train": (a, b), "after": (b, 1.0)}

    def __call__(self, phase: str, done: float, total: float, message: str) -> None:
        if self.cb is None:
            return
        lo, hi = self.spans[phase]
        self.cb(min(1.0, lo + (hi - lo) * (done / total if total else 1.0)), message)


def retrain(linker: Any, examples: Sequence[Example], out_dir: str | Path, config: RetrainConfig | None = None, *,
            test_examples: Sequence[Example] = (), progress_cb: ProgressCallback | None = None,
            parts: Sequence[TrainablePart] = DEFAULT_PARTS) -> RetrainResult:
    """Fine-tune copies of ``parts`` on ``examples`` (the store's decisions, one gold label per input), judge
    the candidate against ``linker`` on the held-out slice and ``test_examples``, and say whether it is
    accepted (see the module docstring). ``linker`` is never changed; adopt an accepted candidate with
    `RetrainResult.adopt`. Raises `RetrainError` for unusable input (see `check_decisions`)."""
    config = config or RetrainConfig()
    parts = tuple(parts)
    check_decisions(linker, examples, config, parts)
    t0, out = time.perf_counter(), Path(out_dir)
    train_part, held_out = split(examples, config)
    test = list(test_examples)[: config.test_limit] if config.test_limit else list(test_examples)
    steps = math.ceil(len(train_part) / config.grad_accum) * config.epochs * len(parts)
    report = _Progress(progress_cb, len(held_out) + len(test), steps)
    log.info("re-training %s on %d decisions, judging on %d held out and %d test examples",
             "+".join(p.name for p in parts), len(train_part), len(held_out), len(test))
    before = _scores(linker, held_out, test, lambda d, n: report("before", d, n, f"judging the serving model {d}/{n}"))
    candidate, checkpoints = _train(linker, train_part, out, config, parts, report)
    after = _scores(candidate, held_out, test, lambda d, n: report("after", d, n, f"judging the new model {d}/{n}"))
    accepted, reason = decide(before, after, all(p.needs_gain for p in parts))
    log.info("re-training %s: %s", "accepted" if accepted else "rejected", reason)
    return RetrainResult(before, after, accepted, reason, {p.name: p.version(candidate) for p in parts},
                         {p.name: p.version(linker) for p in parts}, checkpoints, len(train_part), len(held_out),
                         len(test), time.perf_counter() - t0, out, candidate, parts)


def _train(linker: Any, examples: list[Example], out: Path, config: RetrainConfig,
           parts: tuple[TrainablePart, ...], report: _Progress) -> tuple[Any, dict[str, Path]]:
    candidate = linker
    for part in parts:
        candidate = part.copy(candidate)
    checkpoints, done = {}, 0
    for part in parts:
        def on_step(step: int, total: int, offset: int = done, name: str = part.name) -> None:
            report("train", offset + step, total * len(parts), f"training the {name}: step {step}/{total}")

        checkpoints[part.name] = part.fit(candidate, examples, out / part.name, config, on_step)
        done += math.ceil(len(examples) / config.grad_accum) * config.epochs
    return candidate, checkpoints


def _scores(linker: Any, held_out: Sequence[Example], test: Sequence[Example],
            tick: Callable[[int, int], None]) -> Scores:
    n = len(held_out) + len(test)
    held = _accuracy(linker, held_out, lambda i: tick(i, n))
    acc_test = _accuracy(linker, test, lambda i: tick(len(held_out) + i, n)) if test else None
    return Scores(held, acc_test)


def _accuracy(linker: Any, examples: Sequence[Example], tick: Callable[[int], None]) -> float:
    """`gemel.data.evaluate`'s exact-match accuracy (each example kept out of its own prompt and memory), linked one
    at a time so that progress can be reported."""
    from gemel.data.evaluate import predict
    from gemel.data.metrics import evaluate

    preds = []
    for i, ex in enumerate(examples, 1):
        preds += predict(linker, [ex], progress=False)
        tick(i)
    return evaluate(preds, list(examples)).accuracy

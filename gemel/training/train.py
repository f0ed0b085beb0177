"""Training GEMEL's feature mapper: the only trained part; the vision encoder and the LLM stay frozen.

As in the paper (Shi et al. 2024, §3; ``main.py``/``model.py`` of github.com/HITsz-TMG/GEMEL): each training
prompt holds the n demonstrations retrieved for the example (the example itself excluded, by id), then the query
with its visual prefix, then the gold entity name and EOS. The loss is the LM's cross-entropy on those answer
tokens only; it reaches the mapper through every visual prefix of the prompt (demonstrations' and query's).
AdamW, linear warm-up then linear decay, gradient accumulation (one example per micro-step: prompts differ in
length, so there is no padding), gradient clipping, a seed.

The loop runs through `accelerate` (device placement, ``prepare``, ``backward``, accumulation), so
``accelerate launch -m gemel train ...`` trains data-parallel on several GPUs; on one CPU it is a plain loop.
Each epoch writes ``last.pt`` (mapper + its spec) and ``trainer_state.pt`` (optimizer, scheduler, step) for
``--resume``, ``mapper.pt`` (best dev accuracy, else last), ``log.jsonl`` and ``training.png``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from gemel.errors import GemelError
from gemel.models.mapper import FeatureMapper, MapperSpec, check_compatible
from gemel.types import Example

log = logging.getLogger(__name__)

STATE_FORMAT = "gemel-trainer/1"


class TrainError(GemelError):
    """Training cannot start or resume as asked; the message says why and what to do."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3  # passes over the training examples (paper: 5)
    lr: float = 1e-4  # AdamW peak learning rate (paper: 1e-6 for OPT-6.7B in fp16)
    weight_decay: float = 0.01  # AdamW weight decay of the mapper's weight (not its bias), as the paper
    warmup_ratio: float = 0.1  # share of optimizer steps with a linear warm-up, then linear decay to 0
    grad_accum: int = 8  # examples per optimizer step (paper: 16)
    max_grad_norm: float = 1.0  # gradient clipping (paper: 1.0)
    seed: int = 0  # order of the examples, and everything random
    dev_limit: int | None = None  # evaluate on the first N dev examples only (None = all)
    eval_before: bool = True  # also measure dev accuracy before the first epoch (epoch 0: untrained)
    cpu: bool = False  # train on the CPU even when an accelerator is present (the demo's serving models stay put)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise TrainError(f"epochs={self.epochs} must be >= 1")
        if not (0.0 < self.lr < 1.0):
            raise TrainError(f"lr={self.lr} must be in (0, 1); try 1e-4")
        if self.weight_decay < 0:
            raise TrainError(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TrainError(f"warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.grad_accum < 1:
            raise TrainError(f"grad_accum={self.grad_accum} must be >= 1 (examples per optimizer step)")
        if self.max_grad_norm <= 0:
            raise TrainError(f"max_grad_norm={self.max_grad_norm} must be > 0")
        if self.dev_limit is not None and self.dev_limit < 1:
            raise TrainError(f"dev_limit={self.dev_limit} must be >= 1, or None for the whole dev set")


@dataclass
class TrainResult:
    out_dir: Path
    mapper_path: Path  # mapper.pt: best dev epoch, else the last
    version: str  # the saved mapper's version (content hash)
    epochs_run: int
    steps: int
    trainable: int  # trained parameters (the mapper's)
    total: int  # every parameter of the linker's networks (mapper + LLM + vision encoder)
    best_epoch: int | None = None
    best_dev: float | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


# ---- one example's loss ----------------------------------------------------------------------------------
def parameter_counts(linker: Any) -> tuple[int, int]:
    """(trainable, total) parameters: the mapper's vs. mapper + LLM + vision encoder (paper: ~0.3%)."""
    trainable = sum(p.numel() for p in linker.mapper.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in linker.lm.model.parameters())
    if linker.vision is not None:
        frozen += sum(p.numel() for p in linker.vision.parameters())
    return trainable, trainable + frozen


def training_prompt(linker: Any, mapper: torch.nn.Module, ex: Example) -> torch.Tensor:
    """(1, T, H) prompt embeddings for ``ex`` (demonstrations + query, ending in ``[Answer]``), built by the
    linker's own `build_prompt` (so training prompts are inference prompts, the example itself excluded by
    id), with gradients flowing into ``mapper`` through every visual prefix."""
    exclude = [ex.id] if ex.id is not None else []
    verbatim = ex.meta.get("verbatim", True)  # a data set's mention may not occur in its text: prompted as given
    return linker.build_prompt(ex.image, ex.text, ex.mention, exclude=exclude, mapper=mapper,
                               verbatim=verbatim).embeds


def answer_loss(linker: Any, embeds: torch.Tensor, answer: Sequence[int]) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens after the prompt (teacher forcing; no loss on the prompt)."""
    model = linker.lm.model
    target = torch.tensor(list(answer), device=embeds.device)  # (L,)
    inputs = torch.cat([embeds, linker.lm.embed(list(answer[:-1]))[None].to(embeds.dtype)], dim=1)  # (1, T+L-1, H)
    logits = model(inputs_embeds=inputs, logits_to_keep=len(answer)).logits[0]  # (L, V): predicts answer[0..L-1]
    return torch.nn.functional.cross_entropy(logits.float(), target)


def example_loss(linker: Any, mapper: torch.nn.Module, ex: Example) -> torch.Tensor:
    """The training loss of one example. When its prompt holds no visual prefix the loss cannot move the
    mapper; it is then tied to the mapper with a zero weight, so data-parallel ranks still synchronise."""
    embeds = training_prompt(linker, mapper, ex)
    loss = answer_loss(linker, embeds, linker.lm.answer_tokens(ex.entity or ""))
    return loss + 0.0 * sum(p.sum() for p in mapper.parameters())


# ---- schedule, checkpoints -------------------------------------------------------------------------------
def warmup_linear(warmup: int, total: int):
    """LR multiplier: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def optimizer_for(mapper: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in mapper.named_parameters() if p.requires_grad and not n.endswith("bias")]
    plain = [p for n, p in mapper.named_parameters() if p.requires_grad and n.endswith("bias")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": plain, "weight_decay": 0.0}], lr=config.lr)


def save_state(path: Path, optimizer: Any, scheduler: Any, *, epoch: int, step: int, spec: MapperSpec,
               best: tuple[int | None, float | None], config: TrainConfig) -> None:
    torch.save({"format": STATE_FORMAT, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "step": step, "spec": asdict(spec), "best_epoch": best[0], "best_dev": best[1],
                "config": asdict(config)}, str(path))


def load_state(folder: Path, spec: MapperSpec) -> tuple[FeatureMapper, dict[str, Any]]:
    """The mapper and trainer state of a run folder; refuses a run of another profile (encoder, LLM, k)."""
    last, state_path = folder / "last.pt", folder / "trainer_state.pt"
    if not last.exists() or not state_path.exists():
        raise TrainError(f"cannot resume from {str(folder)!r}: it lacks last.pt or trainer_state.pt "
                         "(give the --out folder of an earlier `gemel train` run)")
    mapper = FeatureMapper.load(last, expected=spec)
    state = torch.load(str(state_path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainError(f"{state_path} is not a GEMEL Studio trainer state")
    check_compatible(MapperSpec(**state["spec"]), spec, str(state_path))
    return mapper, state


# ---- the loop --------------------------------------------------------------------------------------------
class Trainer:
    """Trains ``linker.mapper`` in place on labelled examples, writing a run folder."""

    def __init__(self, linker: Any, config: TrainConfig, out_dir: str | Path, *, progress: bool = True,
                 on_log: Callable[[dict[str, Any]], None] | None = None) -> None:
        if linker.mapper is None:
            raise TrainError(f"profile {linker.config.name!r} has no vision encoder (vision.kind = 'none'): "
                             "there is no feature mapper to train")
        self.linker, self.config, self.out = linker, config, Path(out_dir)
        self.progress = progress
        self.on_log = on_log  # called with every log entry (start, each optimizer step, checkpoints, dev)
        self.log: list[dict[str, Any]] = []

    def fit(self, train: Sequence[Example], dev: Sequence[Example] = (), resume: bool = False) -> TrainResult:
        train = self._usable(train)
        acc = self._accelerator()
        self.out.mkdir(parents=True, exist_ok=True)
        run = self._prepare(acc, train, resume)
        trainable, total_params = parameter_counts(self.linker)
        self._start(acc, len(train), len(dev), trainable, total_params, resume)
        if dev and self.config.eval_before and run.epoch == 0:
            self._dev(acc, dev, 0)
        first = run.epoch
        for epoch in range(first + 1, self.config.epochs + 1):
            run.step = self._epoch(acc, run.model, run.optimizer, run.scheduler, run.loader, epoch, run.step)
            dev_acc = self._dev(acc, dev, epoch) if dev else None
            run.best = self._checkpoint(acc, run.optimizer, run.scheduler, epoch, run.step, dev_acc, run.best)
        acc.wait_for_everyone()
        version = self._select(self.out / "mapper.pt")
        return TrainResult(self.out, self.out / "mapper.pt", version, self.config.epochs - first, run.step,
                           trainable, total_params, run.best[0], run.best[1], self.log)

    def _prepare(self, acc: Any, train: list[Example], resume: bool) -> "_Run":
        """Model, AdamW, warm-up/decay schedule and a shuffled loader through ``accelerate``; resumed if asked."""
        mapper = self._freeze_and_place(acc.device)
        state = self._resume_weights() if resume else None
        optimizer = optimizer_for(mapper, self.config)
        total = math.ceil(len(train) / self.config.grad_accum) * self.config.epochs  # optimizer steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_linear(round(total * self.config.warmup_ratio), total))
        loader = torch.utils.data.DataLoader(train, batch_size=1, shuffle=True, collate_fn=_single)
        run = _Run(*acc.prepare(mapper, optimizer, loader, scheduler))
        if state is not None:
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.scheduler.load_state_dict(state["scheduler"])
            run.epoch, run.step, run.best = state["epoch"], state["step"], (state["best_epoch"], state["best_dev"])
        return run

    # ---- setup
    def _usable(self, train: Sequence[Example]) -> list[Example]:
        usable = [ex for ex in train if ex.entity]
        if len(usable) < len(train):
            log.warning("skipping %d NIL / unlabelled examples: they have no answer to learn",
                        len(train) - len(usable))
        if not usable:
            raise TrainError("no labelled training example (every example is NIL or has no entity)")
        # the paper retrieves demonstrations from the training set: a variant of the linker with them in its
        # pool (the caller's linker keeps its own pool; the mapper is the same object, trained in place)
        pool = self.linker.labelled_pool.with_examples(usable)
        self.linker = self.linker.replace(pool=pool)
        log.info("%d training examples (%d demonstrations in the pool)", len(usable), len(pool))
        return usable

    def _accelerator(self) -> Any:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, set_seed

        set_seed(self.config.seed)
        return Accelerator(cpu=self.config.cpu, gradient_accumulation_steps=self.config.grad_accum,
                           dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                                     data_seed=self.config.seed))

    def _freeze_and_place(self, device: torch.device) -> FeatureMapper:
        if self.linker.lm.dtype_name == "int8":  # quantised Linears pass no gradient back to the prefixes
            raise TrainError("llm.dtype = 'int8' is for inference only: train with 'float32' or 'bfloat16'")
        self.linker.lm.model.eval().requires_grad_(False).to(device)
        if self.linker.vision is not None:
            self.linker.vision.eval().requires_grad_(False)  # features come from the cache, on the CPU
        mapper = self.linker.mapper
        mapper.requires_grad_(True).train().to(device)
        return mapper

    def _resume_weights(self) -> dict[str, Any]:
        mapper, state = load_state(self.out, self.linker.mapper.spec)
        self.linker.mapper.load_state_dict(mapper.state_dict())
        self.linker.mapper.version = mapper.version
        self.log = _read_log(self.out / "log.jsonl")
        log.info("resuming %s after epoch %d (step %d)", self.out, state["epoch"], state["step"])
        return state

    def _start(self, acc: Any, n_train: int, n_dev: int, trainable: int, total: int, resume: bool) -> None:
        entry = {"event": "resume" if resume else "start", "trainable": trainable, "total": total,
                 "trainable_share": trainable / total, "train": n_train, "dev": n_dev,
                 "processes": acc.num_processes, "profile": self.linker.config.name,
                 "config": asdict(self.config)}
        log.info("training %d of %d parameters (%.3f%%) on %d examples", trainable, total,
                 100 * trainable / total, n_train)
        self._write(acc, entry)

    # ---- epochs
    def _epoch(self, acc: Any, model: Any, optimizer: Any, scheduler: Any, loader: Any, epoch: int,
               step: int) -> int:
        from tqdm import tqdm

        loader.set_epoch(epoch)
        model.train()
        window: list[float] = []
        bar = tqdm(loader, desc=f"epoch {epoch}/{self.config.epochs}", unit="example", file=sys.stderr,
                   disable=not (self.progress and acc.is_local_main_process))
        for ex in bar:
            with acc.accumulate(model):
                loss = example_loss(self.linker, model, ex)
                acc.backward(loss)
                window.append(float(loss.detach()))
                if acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if acc.sync_gradients:
                step += 1
                mean = float(acc.reduce(torch.tensor(sum(window) / len(window), device=acc.device), "mean"))
                self._write(acc, {"step": step, "epoch": epoch, "loss": mean, "lr": scheduler.get_last_lr()[0]})
                bar.set_postfix(loss=f"{mean:.3f}")
                window = []
        return step

    def _dev(self, acc: Any, dev: Sequence[Example], epoch: int) -> float | None:
        from gemel.data.evaluate import EvalOptions, evaluate_linker

        if not acc.is_main_process:
            acc.wait_for_everyone()
            return None
        t0 = time.perf_counter()
        with _linking_mode(self.linker, acc.device):
            result = evaluate_linker(self.linker, dev, options=EvalOptions(limit=self.config.dev_limit,
                                                                           progress=self.progress))
        self._write(acc, {"epoch": epoch, "dev_accuracy": result.accuracy, "dev_n": result.report.n,
                          "dev_ci": list(result.report.ci), "dev_seconds": time.perf_counter() - t0})
        log.info("epoch %d: dev accuracy %.4f (n=%d)", epoch, result.accuracy, result.report.n)
        acc.wait_for_everyone()
        return result.accuracy

    def _checkpoint(self, acc: Any, optimizer: Any, scheduler: Any, epoch: int, step: int, dev_acc: float | None,
                    best: tuple[int | None, float | None]) -> tuple[int | None, float | None]:
        improved = dev_acc is None or best[1] is None or dev_acc >= best[1]
        if improved:
            best = (epoch, dev_acc)
        if acc.is_main_process:
            mapper = self.linker.mapper
            extra = {"epoch": epoch, "step": step, "dev_accuracy": dev_acc, "profile": self.linker.config.name,
                     "train_config": asdict(self.config)}
            version = mapper.save(self.out / "last.pt", extra=extra)
            save_state(self.out / "trainer_state.pt", optimizer, scheduler.scheduler, epoch=epoch, step=step,
                       spec=mapper.spec, best=best, config=self.config)
            if improved:
                shutil.copyfile(self.out / "last.pt", self.out / "mapper.pt")
            self._write(acc, {"event": "checkpoint", "epoch": epoch, "version": version, "best": improved})
            self._plot()
        acc.wait_for_everyone()
        return best

    def _select(self, path: Path) -> str:
        """Leave the linker with the selected mapper (mapper.pt: best dev epoch, else the last)."""
        chosen = FeatureMapper.load(path, expected=self.linker.mapper.spec)
        with torch.no_grad():
            self.linker.mapper.load_state_dict(chosen.state_dict())
        self.linker.mapper.version = chosen.version
        self.linker.mapper.eval()
        return chosen.version

    # ---- log
    def _write(self, acc: Any, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        if self.on_log is not None:
            self.on_log(entry)
        if acc.is_main_process:
            with (self.out / "log.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def _plot(self) -> None:
        from gemel.data.plots import PlotError, plot_training

        try:
            plot_training(self.log, self.out / "training.png")
        except PlotError as e:
            log.warning("no training plot: %s", e)


@contextmanager
def _linking_mode(linker: Any, device: torch.device) -> Iterator[None]:
    """The mapper in eval mode, and the networks on the CPU while ``linker.link`` runs: the engine's decoding
    builds its index tensors on the CPU, so it cannot yet run on an accelerator."""
    if device.type != "cpu":
        log.warning("dev evaluation runs on the CPU: Linker.link does not place its tensors on %s yet", device)
        linker.lm.model.to("cpu")
        linker.mapper.to("cpu")
    linker.mapper.eval()
    try:
        yield
    finally:
        linker.mapper.train().to(device)
        linker.lm.model.to(device)


@dataclass
class _Run:
    """What the loop carries from epoch to epoch (prepared by accelerate)."""

    model: Any
    optimizer: Any
    loader: Any
    scheduler: Any
    epoch: int = 0  # last completed epoch
    step: int = 0  # optimizer steps so far
    best: tuple[int | None, float | None] = (None, None)  # (epoch, dev accuracy) of mapper.pt


def _single(batch: list[Example]) -> Example:
    return batch[0]


def _read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train(linker: Any, examples: Sequence[Example], out_dir: str | Path, config: TrainConfig | None = None, *,
          dev: Sequence[Example] = (), resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``linker.mapper`` on ``examples`` (in place) and write the run folder; see the module docstring."""
    return Trainer(linker, config or TrainConfig(), out_dir, progress=progress).fit(examples, dev, resume)

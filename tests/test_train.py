"""Training the feature mapper on tiny random models: loss goes down, only the mapper moves, the loss is the
linker's own answer score, checkpoints round-trip, resume equals an uninterrupted run, mismatches are refused."""

from __future__ import annotations

import json

import pytest
import torch

from gemel.generation.decoding import prefill, score_sequences
from gemel.linker import Linker
from gemel.models.mapper import FeatureMapper, MapperMismatchError
from gemel.training.train import (
    TrainConfig,
    TrainError,
    answer_loss,
    example_loss,
    parameter_counts,
    train,
    training_prompt,
    warmup_linear,
)
from gemel.types import Example

FAST = dict(lr=3e-3, grad_accum=2, warmup_ratio=0.0, eval_before=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def linker(tiny_config):
    return Linker.load(tiny_config)  # a fresh one: training changes the mapper and the pool


@pytest.fixture
def seed_examples(linker):
    return [ex for ex in linker.labelled_pool.live() if ex.image]  # the seed examples with an image


def mean_loss(linker, examples) -> float:
    with torch.no_grad():
        return sum(float(example_loss(linker, linker.mapper, ex)) for ex in examples) / len(examples)


def test_a_few_steps_reduce_the_loss(tiny_config, tmp_path):
    # no demonstrations: the random tiny LLM attends almost uniformly, so the query's prefix must not be
    # drowned in a long prompt for the loss to move measurably (float noise is ~1e-7)
    linker = Linker.load(tiny_config.replace(demos={"n": 0}))
    examples = [ex for ex in linker.labelled_pool.live() if ex.image]
    before = mean_loss(linker, examples)
    train(linker, examples, tmp_path / "run", TrainConfig(epochs=4, **FAST), progress=False)
    after = mean_loss(linker, examples)
    assert after < before - 1e-3, (before, after)


def test_only_the_mapper_changes(linker, seed_examples, tmp_path):
    llm = {k: v.clone() for k, v in linker.lm.model.state_dict().items()}
    vision = {k: v.clone() for k, v in linker.vision.state_dict().items()}
    mapper = {k: v.clone() for k, v in linker.mapper.state_dict().items()}
    train(linker, seed_examples, tmp_path / "run", TrainConfig(epochs=1, **FAST), progress=False)
    assert all(torch.equal(v, linker.lm.model.state_dict()[k]) for k, v in llm.items())
    assert all(torch.equal(v, linker.vision.state_dict()[k]) for k, v in vision.items())
    assert not all(torch.equal(v, linker.mapper.state_dict()[k]) for k, v in mapper.items())
    assert not any(p.requires_grad for p in linker.lm.model.parameters())


def test_parameter_counts_are_the_mappers_share(linker):
    trainable, total = parameter_counts(linker)
    assert trainable == sum(p.numel() for p in linker.mapper.parameters())
    assert 0 < trainable < total


def test_loss_is_the_linkers_answer_score(linker, seed_examples):
    """The training loss is minus the mean log-probability the linker scores the gold name with."""
    ex = seed_examples[0]
    with torch.no_grad():
        embeds = training_prompt(linker, linker.mapper, ex)
        answer = linker.lm.answer_tokens(ex.entity)
        loss = float(answer_loss(linker, embeds, answer))
        [total] = score_sequences(linker.lm.model, prefill(linker.lm.model, embeds), [answer])
    assert loss == pytest.approx(-total / len(answer), rel=1e-4, abs=1e-4)


def test_gradients_reach_the_mapper_through_demonstration_prefixes(linker):
    """A text-only query still trains the mapper, through its demonstrations' visual prefixes."""
    ex = Example(text="Hopper wrote a compiler for the Navy.", mention="Hopper", entity="Grace Hopper", id="q")
    qp = linker.build_prompt(None, ex.text, ex.mention, exclude=["q"], mapper=linker.mapper)
    with_prefix = [seg.prefix for seg in qp.segments if seg.prefix is not None]
    assert with_prefix and all(p.shape == (2, linker.lm.hidden_size) and p.requires_grad for p in with_prefix)
    assert qp.segments[-1].prefix is None  # the query itself is text-only
    answer_loss(linker, qp.embeds, linker.lm.answer_tokens(ex.entity)).backward()
    assert linker.mapper.linear.weight.grad.abs().sum() > 0
    linker.mapper.zero_grad()


def test_an_example_is_not_its_own_demonstration(linker, seed_examples):
    linker = linker.replace(config=linker.config.replace(demos={"same_caption": "keep"}))  # else dropped by caption
    ex = seed_examples[0]
    plain = training_prompt(linker, linker.mapper, ex)
    copy = Example(text=ex.text, mention=ex.mention, entity=ex.entity, image=ex.image, id="other-id")
    with_itself = training_prompt(linker, linker.mapper, copy)
    assert with_itself.shape[1] != plain.shape[1]  # the copy retrieves the original as a demonstration


def test_run_folder_has_checkpoint_log_and_plot(linker, seed_examples, tmp_path, tiny_config):
    dev = seed_examples[:2]
    result = train(linker, seed_examples, tmp_path / "run", TrainConfig(epochs=2, **{**FAST, "eval_before": True}),
                   dev=dev, progress=False)
    out = tmp_path / "run"
    assert {"mapper.pt", "last.pt", "trainer_state.pt", "log.jsonl", "training.png"} <= {p.name for p in out.iterdir()}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[0]["trainable"] == result.trainable
    assert [e["epoch"] for e in log if "dev_accuracy" in e] == [0, 1, 2]
    assert sum("loss" in e for e in log) == result.steps == 2 * 2  # 4 examples / accumulation 2, two epochs
    assert 1 <= result.best_epoch <= 2
    mapper = FeatureMapper.load(out / "mapper.pt", expected=linker.mapper.spec)
    assert mapper.version == result.version == linker.mapper.version
    reloaded = Linker.load(tiny_config.replace(mapper={"checkpoint": str(out / "mapper.pt")}))
    assert torch.equal(reloaded.mapper.linear.weight, linker.mapper.linear.weight.cpu())
    assert reloaded.link(None, "Apple sells phones.", "Apple").mapper == result.version


def test_resume_equals_an_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    from gemel.training.train import Trainer

    config = TrainConfig(epochs=2, **FAST)
    straight = Linker.load(tiny_config)
    examples = [ex for ex in straight.labelled_pool.live() if ex.image]
    train(straight, examples, tmp_path / "a", config, progress=False)

    real_epoch = Trainer._epoch

    def crash_in_epoch_2(self, acc, model, optimizer, scheduler, loader, epoch, step):
        if epoch == 2:
            raise KeyboardInterrupt("the machine went away")
        return real_epoch(self, acc, model, optimizer, scheduler, loader, epoch, step)

    monkeypatch.setattr(Trainer, "_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(Linker.load(tiny_config), examples, tmp_path / "b", config, progress=False)
    monkeypatch.setattr(Trainer, "_epoch", real_epoch)
    resumed = Linker.load(tiny_config)
    result = train(resumed, examples, tmp_path / "b", config, resume=True, progress=False)
    assert result.epochs_run == 1 and result.steps == 4
    assert torch.allclose(resumed.mapper.linear.weight, straight.mapper.linear.weight, atol=1e-6)
    assert not torch.allclose(resumed.mapper.linear.weight, Linker.load(tiny_config).mapper.linear.weight)
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert sum('"loss"' in line for line in log) == 4 and any('"resume"' in line for line in log)


def test_resume_refuses_a_run_of_another_profile(tiny_config, seed_examples, linker, tmp_path):
    train(linker, seed_examples, tmp_path / "run", TrainConfig(epochs=1, **FAST), progress=False)
    other = Linker.load(tiny_config.replace(mapper={"prefix_length": 3}))
    with pytest.raises(MapperMismatchError, match="prefix_length: checkpoint 2 vs profile 3"):
        train(other, seed_examples, tmp_path / "run", TrainConfig(epochs=2, **FAST), resume=True, progress=False)
    with pytest.raises(MapperMismatchError, match="prefix_length"):
        Linker.load(tiny_config.replace(mapper={"prefix_length": 3, "checkpoint": str(tmp_path / "run" / "mapper.pt")}))


def test_resume_without_an_earlier_run_is_refused(linker, seed_examples, tmp_path):
    with pytest.raises(TrainError, match="last.pt or trainer_state.pt"):
        train(linker, seed_examples, tmp_path / "empty", TrainConfig(epochs=1, **FAST), resume=True, progress=False)


def test_text_only_profile_has_nothing_to_train(tiny_config, tmp_path):
    linker = Linker.load(tiny_config.replace(vision={"kind": "none"}))
    with pytest.raises(TrainError, match="no feature mapper"):
        train(linker, linker.labelled_pool.live(), tmp_path / "run", TrainConfig(epochs=1), progress=False)


def test_nil_only_data_is_refused(linker, tmp_path):
    nil = [Example(text="Nobody knows Zorblat.", mention="Zorblat", entity=None, id="n")]
    with pytest.raises(TrainError, match="no labelled training example"):
        train(linker, nil, tmp_path / "run", TrainConfig(epochs=1), progress=False)


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs=0"), ("lr", 0.0, "lr=0.0"), ("lr", 2.0, "lr=2.0"), ("weight_decay", -1.0, "weight_decay"),
    ("warmup_ratio", 1.0, "warmup_ratio"), ("grad_accum", 0, "grad_accum=0"), ("max_grad_norm", 0.0, "max_grad_norm"),
    ("dev_limit", 0, "dev_limit=0"),
])
def test_bad_train_config_is_refused(field, value, message):
    with pytest.raises(TrainError, match=message):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("warmup,total", [(0, 10), (3, 10), (10, 10), (2, 50)])
def test_schedule_warms_up_then_decays_to_zero(warmup, total):
    f = warmup_linear(warmup, total)
    values = [f(s) for s in range(total + 1)]
    assert all(0.0 <= v <= 1.0 for v in values)
    peak = max(range(total + 1), key=lambda s: values[s])
    assert values[:peak + 1] == sorted(values[:peak + 1])  # rising to the peak
    assert values[peak:] == sorted(values[peak:], reverse=True)  # falling after it
    assert values[-1] == 0.0


def test_cli_train_writes_the_run_folder(tiny_config, tiny_dir, tmp_path, capsys):
    from gemel.cli.main import main
    from gemel.config import profile_toml

    profile = tmp_path / "tiny.toml"
    profile.write_text(profile_toml(tiny_config))
    out = tmp_path / "run"
    code = main(["train", "--profile", str(profile), "--data", str(tiny_dir / "seed.jsonl"), "--dev",
                 str(tiny_dir / "seed.jsonl"), "--dev-limit", "2", "--epochs", "1", "--grad-accum", "4",
                 "--out", str(out)])
    assert code == 0
    assert (out / "mapper.pt").exists() and (out / "training.png").exists()
    assert "trained" in capsys.readouterr().out
    assert main(["train", "--profile", str(profile), "--out", str(out)]) == 2  # no data: a readable error


@pytest.mark.parametrize("command", [["train"], ["eval"]])
def test_every_command_has_help(command, capsys):
    from gemel.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(command + ["--help"])
    assert e.value.code == 0
    assert "usage: gemel " + command[0] in capsys.readouterr().out


def test_training_on_the_seed_file_does_not_duplicate_the_pool(linker, tiny_dir, tmp_path):
    from gemel.data.evaluate import load_examples
    from gemel.training.train import Trainer

    before = len(linker.labelled_pool)
    trainer = Trainer(linker, TrainConfig(epochs=1, **FAST), tmp_path / "run", progress=False)
    trainer.fit(load_examples(tiny_dir / "seed.jsonl"))
    assert len(trainer.linker.labelled_pool) == before  # the same examples, not a second copy taking slots
    assert trainer.linker.mapper is linker.mapper  # the caller's mapper is the one trained


def test_training_examples_join_the_pool_of_a_variant_only(linker, tmp_path):
    from gemel.training.train import Trainer

    before = [e.id for e in linker.labelled_pool.live()]
    new = Example(text="Grace Hopper led the team that built the A-0 compiler.", mention="Grace Hopper",
                  entity="Grace Hopper", id="train-1")
    trainer = Trainer(linker, TrainConfig(epochs=1, **FAST), tmp_path / "run", progress=False)
    trainer.fit([new])
    assert "train-1" in [e.id for e in trainer.linker.labelled_pool.live()]
    assert [e.id for e in linker.labelled_pool.live()] == before  # the caller's pool is untouched

"""Does the picture help linking? Text only / image only / untrained prefix / all combined, on held-out data.

    python bench/image_ablation.py [--limit N] [--fit] [--flags N] [--weight W --candidates K]

Variants (offline default; no trained mapper is shipped: ``--mapper CHECKPOINT`` adds "trained prefix" and
"trained + image", the same with that mapper):
- ``text only``: no picture anywhere (no visual prefix, no image score);
- ``image only``: the best image score among the combined variant's candidates (text top-K + image top-K_img);
- ``untrained prefix``: today's offline default (the picture only feeds the untrained mapper's prefix);
- ``combined``: the prefix + the image scorer's candidates and fusion term (``[image]`` of the profile, or
  ``--weight`` / ``--candidates``).

Sets (never a picture the scorer trained on): (a) the same-caption groups of the corpus test split (one
ambiguous caption, 2-3 pictures of different entities; a group counts when every picture is right), (b) flags
of countries in an art style never trained on (caption "This is the flag of the country.", mention "the
country": only the picture decides), (c) the real photos of ``assets/eval/test.jsonl``, in-pool (the picture is
also in the seed pool or the corpus train split) and out-of-pool apart. ``--fit`` instead fits
``image.weight`` / ``image.candidates`` on the dev data (corpus dev captions + ``assets/eval/dev.jsonl``).

The LLM runs twice per example (text only; prefix + image candidates at the largest K_img), the other variants
re-rank the stored score parts (:mod:`gemel.training.image_fit`). Records are kept in ``bench/out/image_ablation_records
.jsonl`` so a rerun (or a larger ``--limit``) only links what is new. Writes ``bench/out/image_ablation.json``
and ``.png``. Last line: ``text_only= with_image= groups= flags=`` (real-photo accuracy without / with the
image signal, group all-right rate and flag accuracy with it).

``--smoke`` (under a minute, no picture packages needed): the stand-in corpus of ``bench/_smoke.py``, 2 examples
per set, linked afresh, everything written to ``bench/out/smoke/image_ablation/``; the same last line, figures
meaningless (``--smoke --fit``: the fit on 2 examples per dev stratum, likewise).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench._smoke import SMOKE_HELP  # noqa: E402
from gemel.data.metrics import Score  # noqa: E402
from gemel.kb.demonstrations import load_jsonl_examples  # noqa: E402
from gemel.training.captions import (  # noqa: E402
    AMBIGUOUS_TEMPLATES,
    HIDDEN_FLAG,
    HIDDEN_THING,
    captions,
    flag_set,
    same_caption_groups,
    surface_of,
)
from gemel.training.image_fit import (  # noqa: E402
    CONFIDENCES,
    EXACT_NAMES,
    FLATNESSES,
    IMAGE_CANDIDATES,
    MARGINS,
    ImageScored,
    choose,
    collect_one,
    fit,
)
from gemel.types import Example  # noqa: E402

OUT = ROOT / "bench" / "out"
SCORER = "../assets/models/image_scorer.pt"  # relative to gemel/profiles/
FLAG_TEXT, FLAG_MENTION = HIDDEN_FLAG
HIDDEN_TEXT, HIDDEN_MENTION = HIDDEN_THING
K_MAX = max(IMAGE_CANDIDATES)


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_linkers(profile: str, mapper: str | None = None) -> dict:
    """{record variant: (linker, whether it sees the picture)}: the text-only variant, the prefix + image variant
    at K_MAX candidates and every gate open, and with ``mapper`` the same with that trained mapper
    ("trained-<version>"); all share the models."""
    from gemel.config import load_profile
    from gemel.linker import Linker
    from gemel.models.mapper import FeatureMapper

    config = load_profile(profile)
    scorer = config.image.scorer or SCORER
    linker = Linker.load(config.replace(image={"scorer": scorer, "weight": config.image.weight or 0.0,
                                               "candidates": K_MAX, "min_confidence": 0.0,
                                               "min_flatness": 0.0, "max_text_margin": math.inf,
                                               "trust_exact_name": False, "choose_sense": False,
                                               "remove_sense_prior": 0.0}))
    out = {"text": (linker.replace(mapper=None), False), "combined": (linker, True)}
    if mapper:
        trained = FeatureMapper.load(mapper, expected=linker.mapper.spec)
        out[f"trained-{trained.version}"] = (linker.replace(mapper=trained), True)
    return out


def test_sets(corpus, kb, limit: int | None, flags_limit: int | None) -> dict[str, list[Example]]:
    """The held-out sets, each example tagged with its stratum in meta."""
    groups = same_caption_groups(corpus, kb, split="test")
    g = [Example(m.text, m.mention, m.entity, str(corpus.folder / m.image), m.id, "groups", {"group": grp.id})
         for grp in groups for m in grp.members]
    flags = [Example(FLAG_TEXT, FLAG_MENTION, it.entity, str(corpus.path(it)), it.id, "flags")
             for it in flag_set(corpus)]
    seed = {sha(e.image) for e in load_jsonl_examples(ROOT / "gemel/assets/seed/examples.jsonl", "seed") if e.image}
    trained = {sha(corpus.path(it)) for it in corpus.split("train")}
    known = set(corpus.entities("train"))  # entities the scorer was trained on (in another kind of picture)
    photos = [Example(e.text, e.mention, e.entity, e.image, e.id, "photos",
                      {"pool": "in-pool" if e.image and sha(e.image) in seed | trained else "out-of-pool",
                       "scorer": "entity trained" if e.entity in known else "entity not trained"})
              for split in ("test", "outpool")
              for e in load_jsonl_examples(ROOT / f"assets/eval/{split}.jsonl", split) if e.entity]
    return {"groups": g[:limit], "photos": photos[:limit], "flags": flags[:flags_limit or limit]}


def dev_set(corpus, kb, limit: int | None) -> list[Example]:
    """Dev data of both regimes: where the text decides (corpus dev captions of held-out pictures and held-out
    entities, the real dev photos) and where only the picture does ("hidden": held-out dev pictures of trained
    entities, captioned "This is the flag of the country." / "This is the thing in the picture."; the dev split
    has no same-caption groups and no flags of trained countries, so this stands in for both)."""
    caps = captions(corpus, kb, split="dev")
    heldout = {it.id: it.heldout for it in corpus.split("dev")}
    by = {why: [c for c in caps if heldout[c.id.rsplit("#", 1)[0]] == why] for why in ("picture", "entity")}
    n = (limit or 60) // 2
    corpus_dev = [Example(c.text, c.mention, c.entity, str(corpus.folder / c.image), c.id, "corpus-dev")
                  for why in ("picture", "entity") for c in by[why][:n]]
    photos = [Example(e.text, e.mention, e.entity, e.image, e.id, "photos-dev")
              for e in load_jsonl_examples(ROOT / "assets/eval/dev.jsonl", "dev") if e.entity]
    hidden = [Example(FLAG_TEXT if it.kind == "flag" else HIDDEN_TEXT,
                      FLAG_MENTION if it.kind == "flag" else HIDDEN_MENTION, it.entity, str(corpus.path(it)),
                      f"hidden/{it.id}", "hidden-dev")
              for it in sorted(corpus.split("dev"), key=lambda it: it.kind != "flag") if it.heldout == "picture"]
    return corpus_dev + photos[:limit] + hidden[:limit]


def senses_dev(corpus, kb) -> list[Example]:
    """Dev pictures whose entity's name names two or more KB titles, each under two ambiguous captions ("We saw
    Nut on the way home."): the picture must pick the sense. The name is shared exactly (the corpus captions'
    ambiguous ones: 4 pictures) or names longer titles by its last words ("Beetle": `Dung beetle`; captioned
    here with the same templates). Reported beside the fit, not part of it, for ``image.choose_sense`` and
    ``image.remove_sense_prior``."""
    import random

    from gemel.image.gates import names_sense

    exact = [Example(c.text, c.mention, c.entity, str(corpus.folder / c.image), c.id, "senses-dev")
             for c in captions(corpus, kb, split="dev", per_picture=2) if c.kind == "ambiguous"]
    done = {e.id.rsplit("#", 1)[0] for e in exact}
    rng, heads = random.Random(0), []
    for it in corpus.split("dev"):
        name = surface_of(it.entity)
        key = name.casefold()
        if it.id in done or sum(key in t.casefold() and names_sense(name, t) for t in kb.titles) < 2:
            continue
        heads += [Example(rng.choice(AMBIGUOUS_TEMPLATES).format(m=name), name, it.entity, str(corpus.path(it)),
                          f"{it.id}#head{n}", "senses-dev") for n in range(2)]
    return exact + heads


SENSE_PRIOR_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def fit_senses(examples: list[Example], records: dict, w: float, k: int, w_ret: float, gates: dict) -> float:
    """Right answers on the senses check without the image, with image.choose_sense off and on, and with each
    share of the senses' prior removed (``image.remove_sense_prior``); returns the share that gets the most
    right, ties to the middle of the tied shares (of two middles the higher: the rule of the flatness gate)."""
    items = [records[f"{e.source}/{e.id}/combined"] for e in examples]
    off, on = ({**gates, "choose_sense": flag, "remove_sense_prior": 0.0} for flag in (False, True))
    share = {s: {**on, "remove_sense_prior": s} for s in SENSE_PRIOR_SHARES}
    right = lambda **kw: sum(choose(x, w_ret=w_ret, **kw) == x.gold for x in items)  # noqa: E731
    counts = {s: right(w_img=w, k_img=k, **g) for s, g in share.items()}
    print(f"senses-dev: n={len(items)} no image {right(w_img=0, k_img=0)}, choose_sense off "
          f"{right(w_img=w, k_img=k, **off)}, on {counts[0.0]}; by the share of the senses' prior removed: "
          + ", ".join(f"{s:g}: {c}" for s, c in counts.items()))
    for x in items:  # the cases some variant gets wrong
        got = [choose(x, 0, 0, w_ret=w_ret), choose(x, w, k, w_ret=w_ret, **off)] + [
            choose(x, w, k, w_ret=w_ret, **g) for g in share.values()]
        if any(g != x.gold for g in got):
            print(f"  {x.id} {x.gold!r}: no image {got[0]!r}, choose_sense off {got[1]!r}, "
                  + ", ".join(f"share {s:g} {g!r}" for s, g in zip(share, got[2:])))
    tied = sorted(s for s, c in counts.items() if c == max(counts.values()))
    return tied[len(tied) // 2]


def collect(examples: list[Example], linkers: dict, records: dict, path: Path, desc: str,
            wanted: tuple[str, ...] | None = None) -> None:
    """Link what is not yet in ``records`` (keyed by set, id, variant), appending to the records file."""
    from tqdm.auto import tqdm

    wanted = tuple(linkers) if wanted is None else wanted
    todo = [e for e in examples if any(f"{e.source}/{e.id}/{v}" not in records for v in wanted)]
    with path.open("a", encoding="utf-8") as f:
        for ex in tqdm(todo, desc=desc, unit="query"):
            stratum = ex.meta.get("pool", ex.source)
            for variant in wanted:
                linker, sees = linkers[variant]
                key = f"{ex.source}/{ex.id}/{variant}"
                if key not in records:
                    ex_v = Example(ex.text, ex.mention, ex.entity, ex.image if sees else None, ex.id, ex.source)
                    records[key] = collect_one(linker, ex_v, stratum)
                    f.write(json.dumps({"key": key, **records[key].to_dict()}) + "\n")
                    f.flush()


def fill_confidence(examples: list[Example], linkers, records: dict, path: Path) -> None:
    """Give combined records written before confidences were recorded the scorer's confidence on their picture
    (no LLM: ~0.1 s each), cached in ``path``."""
    import dataclasses

    from gemel.image.gates import confidence

    cache = json.loads(path.read_text()) if path.exists() else {}
    for ex in examples:
        key = f"{ex.source}/{ex.id}/combined"
        r = records.get(key)
        if r is None or r.image is None or r.confidence is not None:
            continue
        if key not in cache and linkers is not None:
            combined = linkers["combined"][0]
            scores = combined.image_scores(ex.image)
            cache[key] = None if scores is None else confidence(scores, combined.image_scorer.fusion.temperature)
        if cache.get(key) is not None:
            records[key] = dataclasses.replace(r, confidence=cache[key])
    path.write_text(json.dumps(cache))


def fill_flatness(examples: list[Example], records: dict) -> None:
    """Give records written before flatness and exact names were recorded their picture's flatness (pixels only,
    ~5 ms each) and which candidates the mention names (exactly, and as senses)."""
    import dataclasses

    from gemel.image.gates import names_exactly, names_sense
    from gemel.training.image_fit import picture_flatness

    for ex in examples:
        for variant in ("text", "combined"):
            key = f"{ex.source}/{ex.id}/{variant}"
            r = records.get(key)
            if r is not None and r.named is None:
                r = records[key] = dataclasses.replace(r, named=tuple(names_exactly(ex.mention, n) for n in r.names))
            if r is not None and r.senses is None:
                r = records[key] = dataclasses.replace(r, senses=tuple(names_sense(ex.mention, n) for n in r.names))
            if r is not None and variant == "combined" and r.flatness is None and ex.image:
                records[key] = dataclasses.replace(r, flatness=picture_flatness(ex.image))


def fill_priors(examples: list[Example], linkers, records: dict, path: Path) -> None:
    """Give combined records written before sense priors were recorded the priors of their senses (one LLM pass
    over the demonstrations, only where two or more candidates are senses of the mention and the picture has
    image scores), appended to the records file."""
    import dataclasses

    from gemel.training.image_fit import sense_priors

    todo = [e for e in examples if (r := records.get(f"{e.source}/{e.id}/combined")) is not None
            and r.prior is None and r.image is not None and r.senses is not None and sum(r.senses) >= 2]
    if not todo or linkers is None:
        return
    linker = linkers["combined"][0]
    with path.open("a", encoding="utf-8") as f, torch.no_grad():
        for ex in todo:
            key = f"{ex.source}/{ex.id}/combined"
            r = records[key]
            qp = linker.build_prompt(ex.image, ex.text, ex.mention, exclude=[ex.id] if ex.id else [], verbatim=False)
            rows = [linker.kb.index(n) for n in r.names]
            records[key] = dataclasses.replace(r, prior=sense_priors(linker, qp, ex.mention, rows, r.senses))
            f.write(json.dumps({"key": key, **records[key].to_dict()}) + "\n")


def read_records(path: Path) -> dict[str, ImageScored]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out[d.pop("key")] = ImageScored.from_dict(d)
    return out


def variants(records: dict, ex: Example, w: float, k: int, w_ret: float, gates: dict,
             trained: str | None = None) -> dict[str, bool]:
    """Whether each variant links the example right (``gates``: the combined variant's image gates; ``trained``:
    the record variant of a trained mapper, which adds "trained prefix" (the trained mapper's prefix, the
    image's candidates, no image score) and "trained + image" (everything))."""
    text, comb = records[f"{ex.source}/{ex.id}/text"], records[f"{ex.source}/{ex.id}/combined"]
    out = {"text only": choose(text, 0.0, 0, w_ret=w_ret) == ex.entity,
           "image only": choose(comb, 0.0, k, w_ret=w_ret, image_only=True) == ex.entity,
           "untrained prefix": choose(comb, 0.0, 0, w_ret=w_ret) == ex.entity,
           "combined": choose(comb, w, k, w_ret=w_ret, **gates) == ex.entity}
    if trained:
        tr = records[f"{ex.source}/{ex.id}/{trained}"]
        out["trained prefix"] = choose(tr, 0.0, k, w_ret=w_ret) == ex.entity
        out["trained + image"] = choose(tr, w, k, w_ret=w_ret, **gates) == ex.entity
    return out


def score(hits: list[bool]) -> dict:
    return Score.of(sum(hits), len(hits), 0.95).to_dict()


def evaluate(sets: dict[str, list[Example]], records: dict, w: float, k: int, w_ret: float, gates: dict,
             trained: str | None = None) -> dict:
    out: dict = {}
    for set_name, examples in sets.items():
        hits = [variants(records, ex, w, k, w_ret, gates, trained) for ex in examples]
        names = tuple(hits[0]) if hits else ()
        if set_name == "groups":
            by_group: dict[str, list[dict]] = {}
            for ex, h in zip(examples, hits):
                by_group.setdefault(ex.meta["group"], []).append(h)
            for v in names:
                out[f"groups (all right)/{v}"] = score([all(h[v] for h in hs) for hs in by_group.values()])
                out[f"groups (pictures)/{v}"] = score([h[v] for h in hits])
        elif set_name == "photos":
            for pool in ("all", "in-pool", "out-of-pool", "entity trained", "entity not trained"):
                sub = [h for ex, h in zip(examples, hits) if pool in ("all", ex.meta["pool"], ex.meta["scorer"])]
                for v in names:
                    out[f"photos {pool}/{v}"] = score([h[v] for h in sub])
        else:
            for v in names:
                out[f"{set_name}/{v}"] = score([h[v] for h in hits])
    return out


def table(figures: dict) -> str:
    names = list(dict.fromkeys(k.split("/")[1] for k in figures))
    rows = ["| set | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    sets = list(dict.fromkeys(k.split("/")[0] for k in figures))
    for s in sets:
        cells = [figures[f"{s}/{v}"] for v in names]
        rows.append(f"| {s} (n={cells[0]['n']}) | " + " | ".join(
            f"{c['accuracy']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" for c in cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="offline")
    p.add_argument("--corpus", help="corpus folder (default: the one `gemel corpus build` writes)")
    p.add_argument("--limit", type=int, help="at most N examples per set (a quick look)")
    p.add_argument("--flags", type=int, help="at most N flags (default: --limit, else all 141)")
    p.add_argument("--fit", action="store_true", help="fit image.weight / image.candidates on the dev data")
    p.add_argument("--weight", type=float, help="image.weight of the combined variant (default: the profile's)")
    p.add_argument("--candidates", type=int, help="image.candidates of the combined variant (default: profile's)")
    p.add_argument("--min-confidence", type=float, help="image.min_confidence of the combined variant")
    p.add_argument("--min-flatness", type=float, help="image.min_flatness of the combined variant")
    p.add_argument("--max-text-margin", type=float, help="image.max_text_margin of the combined variant")
    p.add_argument("--trust-exact-name", type=int, choices=(0, 1),
                   help="image.trust_exact_name of the combined variant (1 = true)")
    p.add_argument("--choose-sense", type=int, choices=(0, 1),
                   help="image.choose_sense of the combined variant (1 = true)")
    p.add_argument("--remove-sense-prior", type=float,
                   help="image.remove_sense_prior of the combined variant (0..1: the share of the senses' prior)")
    p.add_argument("--no-link", action="store_true",
                   help="link nothing: report on the examples that already have records (a partial run)")
    p.add_argument("--records", help="records file (default: bench/out/image_{ablation,fit}_records.jsonl)")
    p.add_argument("--mapper", help="a trained mapper checkpoint (gemel train): adds the rows 'trained prefix' and "
                                    "'trained + image' (one more linker run per example)")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    out = OUT
    if args.smoke:  # 2 examples per set, linked afresh (a fresh records file)
        from bench._smoke import smoke_out, stand_in_corpus

        args.corpus, args.limit, args.no_link, out = str(stand_in_corpus()), 2, False, smoke_out("image_ablation")
    torch.set_num_threads(1)

    from gemel.cli.corpus import default_corpus
    from gemel.config import load_profile
    from gemel.data.plots import PlotConfig, plot_ablation
    from gemel.training.corpus import Corpus

    out.mkdir(parents=True, exist_ok=True)
    config = load_profile(args.profile)
    w = args.weight if args.weight is not None else config.image.weight
    k = args.candidates if args.candidates is not None else config.image.candidates
    given = {"min_confidence": args.min_confidence, "min_flatness": args.min_flatness,
             "max_text_margin": args.max_text_margin,
             "trust_exact_name": None if args.trust_exact_name is None else bool(args.trust_exact_name),
             "choose_sense": None if args.choose_sense is None else bool(args.choose_sense),
             "remove_sense_prior": args.remove_sense_prior}
    gates = {g: getattr(config.image, g) if v is None else v for g, v in given.items()}
    w_ret = config.decode.w_ret
    corpus = Corpus.load(args.corpus or default_corpus(args.profile))
    if args.no_link:
        from gemel.kb.entities import KnowledgeBase
        from gemel.sources import resolve

        linkers, kb = None, KnowledgeBase.load(resolve(config.kb.source, config.base_dir), name=config.kb.name)
    else:
        linkers = load_linkers(args.profile, args.mapper)
        kb = linkers["combined"][0].kb
    path = Path(args.records or out / f"image_{'fit' if args.fit else 'ablation'}_records.jsonl")
    records = read_records(path)

    if args.fit:
        dev = dev_set(corpus, kb, args.limit)
        if args.no_link:
            dev = [e for e in dev if f"{e.source}/{e.id}/combined" in records]
        else:
            collect(dev, linkers, records, path, "dev", wanted=("combined",))
        fill_confidence(dev, linkers, records, out / "image_confidence.json")
        fill_flatness(dev, records)
        fill_priors(dev, linkers, records, path)
        items = [records[f"{e.source}/{e.id}/combined"] for e in dev]
        result = fit(items, w_ret, guard=("photos-dev",), confidences=CONFIDENCES,  # lose nothing on real photos
                     flatnesses=FLATNESSES, margins=MARGINS, exact_names=EXACT_NAMES,
                     choose_sense=gates["choose_sense"], remove_sense_prior=gates["remove_sense_prior"])
        for gw, gk, gc, gf, gm, gt, acc in sorted(result.grid, key=lambda g: -g[-1])[:40]:
            print(f"w_img={gw:<5} K_img={gk:<2} min_confidence={gc:<5} min_flatness={gf:<4} max_text_margin={gm:<4} "
                  f"trust_exact_name={gt!s:<5} dev accuracy (mean over strata)={acc:.3f}")
        print(f"(the best 40 of {len(result.grid)} settings; all in {out / 'image_fit.json'})")
        strata = sorted({x.stratum for x in items})
        for s in strata:
            sub = [x for x in items if x.stratum == s]
            fitted = sum(choose(x, result.weight, result.candidates, w_ret=w_ret, choose_sense=gates["choose_sense"],
                                remove_sense_prior=gates["remove_sense_prior"],
                                **result.gates()) == x.gold
                         for x in sub)
            print(f"{s}: n={len(sub)} no image {sum(choose(x, 0, 0, w_ret=w_ret) == x.gold for x in sub)}, "
                  f"fitted {fitted}")
        print("(guard: no fewer real dev photos right than without the image)")
        senses = senses_dev(corpus, kb)
        if args.no_link:
            senses = [e for e in senses if f"{e.source}/{e.id}/combined" in records]
        else:
            collect(senses, linkers, records, path, "senses-dev", wanted=("combined",))
        fill_flatness(senses, records)
        fill_priors(senses, linkers, records, path)
        sense_share = fit_senses(senses, records, result.weight, result.candidates, w_ret, result.gates())
        (out / "image_fit.json").write_text(json.dumps({"weight": result.weight, "candidates": result.candidates,
                                                        **result.gates(),
                                                        "accuracy": result.accuracy, "baseline": result.baseline,
                                                        "grid": result.grid, "n": len(items),
                                                        "guard": ["photos-dev"],
                                                        "remove_sense_prior": sense_share},
                                                       indent=1))
        print(f"fitted image.weight={result.weight} image.candidates={result.candidates} "
              + " ".join(f"image.{g}={v}" for g, v in result.gates().items()) + " "
              f"image.remove_sense_prior={sense_share:g} (on senses-dev) "
              f"dev={result.accuracy:.3f} (no image {result.baseline:.3f}, n={len(items)})")
        return 0

    trained = None
    if args.mapper:
        from gemel.models.mapper import FeatureMapper

        trained = f"trained-{FeatureMapper.load(args.mapper).version}"
    needed = ("text", "combined") + ((trained,) if trained else ())
    sets = test_sets(corpus, kb, args.limit, args.flags)
    sizes = {name: len(examples) for name, examples in sets.items()}
    for name, examples in sets.items():
        if args.no_link:
            sets[name] = [e for e in examples if all(f"{e.source}/{e.id}/{v}" in records for v in needed)]
        else:
            collect(examples, linkers, records, path, name)
        fill_confidence(sets[name], linkers, records, out / "image_confidence.json")
        fill_flatness(sets[name], records)
        fill_priors(sets[name], linkers, records, path)
    figures = evaluate(sets, records, w, k, w_ret, gates, trained)
    print(table(figures))
    payload = {"image": {"weight": w, "candidates": k, **gates, "scorer": "gemel/assets/models/image_scorer.pt"},
               "limit": args.limit, "missing_records": {n: sizes[n] - len(sets[n]) for n in sets},
               "flags_limit": args.flags, "figures": figures,
               "trained_mapper": {"path": args.mapper, "variant": trained} if trained else "none"}
    (out / "image_ablation.json").write_text(json.dumps(payload, indent=1))
    main_sets = ("groups (all right)", "photos all", "flags")
    rows = [{"name": key, **v} for key, v in figures.items() if key.split("/")[0] in main_sets]
    plot_ablation(rows, out / "image_ablation.png", PlotConfig(height=40 * len(rows) + 120))
    get = lambda key: figures[key]["accuracy"]  # noqa: E731
    print(f"text_only={get('photos all/text only'):.3f} with_image={get('photos all/combined'):.3f} "
          f"groups={get('groups (all right)/combined'):.3f} flags={get('flags/combined'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image-only entity scores on the held-out parts of the corpus: projection only, exemplars only, combined.

    python bench/image_score.py [--profile offline] [--corpus DIR] [--scorer PT | --retrain] [--json out.json]

Needs a built corpus (`gemel corpus build`); measures the profile's scorer (the one linking uses), or with
``--retrain`` the corpus's own, trained afresh (``gemel corpus train-projection`` rebuilds the shipped one). Reports
top-1 / top-10 over the whole KB on the test split by why each picture is held out (``style``: an art style
never trained on, entity seen = in-pool; ``picture``: unseen picture of a seen entity = in-pool; ``entity``:
an entity never trained on = out-of-pool), the same-caption groups (choice among the entities sharing the
mention, by the image alone; a group counts when every picture is right), the held-out-style flags, and
"pairs" on dev and test: each picture against its nearest KB neighbour (by "title: description" vector) of the
other kind, an entity the scorer trained on for a picture of one it never saw and the reverse, to ask whether
it can tell an entity it never saw from a known neighbour (also with an exemplar kernel ``tau`` given to every
unseen entity: the open-set rule measured and not taken, README). The line before the last prints the headline
figures in words, the last line the same as ``key=value``: ``style_top1= style_top10= picture_top1= entity_top1=
entity_top10= groups_all_right= groups= groups_projection= groups_exemplars= flags_top1= flags_among_flags=
flags_projection= flags_exemplars= pairs_unseen= pairs_seen=`` (``nan`` where a set is empty).

``--smoke`` (under a minute, no picture packages needed): the stand-in corpus of ``bench/_smoke.py`` with a scorer
trained afresh on it (``--retrain``: the shipped scorer fits only the corpus it was trained on), figures to
``bench/out/smoke/image_score/``; the same last line, figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench._smoke import SMOKE_HELP  # noqa: E402


def topk(scorer, feats, gold, vectors, titles=None, layouts=None) -> tuple[float, float]:
    fused = scorer.score_batch(feats, vectors, titles, layouts)  # (B, N)
    rank = (fused >= fused[np.arange(len(gold)), gold][:, None]).sum(1) - 1  # ties count against the gold
    return float((rank < 1).mean()), float((rank < 10).mean())


PAIR_TAUS = (0.0, 0.2, 0.3, 0.4, 0.5)


def pairs(scorer, feats, gold, layouts, seen, vectors, titles, taus=PAIR_TAUS) -> dict:
    """Share of pictures whose entity beats its nearest KB neighbour of the other kind (seen by the scorer or
    not), for pictures of unseen and of seen entities, with exemplar kernel ``tau`` given to unseen entities."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    near = unit[gold] @ unit.T
    near[np.arange(len(gold)), gold] = -np.inf
    own = seen[gold]
    other = np.where(own[:, None] != seen[None], near, -np.inf).argmax(1)
    rows = np.arange(len(gold))
    fused = scorer.score_batch(feats, vectors, titles, layouts)
    out = {"n_unseen": int((~own).sum()), "n_seen": int(own.sum())}
    w = scorer.fusion.w_exemplar if scorer.exemplars is not None else 0.0
    for tau in taus:
        f = fused + w * tau * ~seen[None]
        right = f[rows, gold] > f[rows, other]
        out[f"tau{tau}"] = {"unseen_gold": float(right[~own].mean()) if (~own).any() else None,
                            "seen_gold": float(right[own].mean()) if own.any() else None}
    return out


def _argmax_unique(scores) -> int:
    """The best candidate, or -1 when the best score is tied (a tie is no choice)."""
    best = int(np.argmax(scores))
    return best if (scores == scores[best]).sum() == 1 else -1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="offline")
    p.add_argument("--corpus", help="corpus folder (default: the one `gemel corpus build` writes)")
    p.add_argument("--scorer", help="artifact to measure (default: the profile's [image] scorer, what linking uses; "
                                    "with --retrain or a profile without one: the corpus's own, trained when missing)")
    p.add_argument("--retrain", action="store_true",
                   help="train the corpus's scorer even if its artifact exists, and measure it")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    if args.smoke:
        from bench._smoke import smoke_out, stand_in_corpus

        args.corpus, args.retrain = str(stand_in_corpus()), True
        args.json = str(smoke_out("image_score") / "image_score.json")

    from gemel.cli.corpus import default_corpus
    from gemel.image.configs import ExemplarConfig, FusionConfig
    from gemel.image.scorer import ImageEntityScorer
    from gemel.training.captions import flag_set, same_caption_groups, shared_surfaces, text_only_upper_bound
    from gemel.training.corpus import Corpus
    from gemel.training.image_scorer import (
        corpus_features,
        corpus_layouts,
        default_artifact,
        load_parts,
        profile_artifact,
        train_scorer,
    )

    t0 = time.perf_counter()
    corpus = Corpus.load(args.corpus or default_corpus(args.profile))
    parts = load_parts(args.profile)
    artifact = Path(args.scorer) if args.scorer else profile_artifact(args.profile)
    if args.retrain or artifact is None:
        artifact = default_artifact(corpus)
        if args.retrain or not artifact.exists():
            train_scorer(corpus, parts).save(artifact)
    scorer = ImageEntityScorer.load(artifact, parts.encoder, parts.embedder.name, parts.kb_vectors,
                                    parts.kb.titles, corpus_manifest=corpus.manifest_sha256)
    print(f"measuring {artifact} ({scorer.version})", flush=True)
    one = FusionConfig(w_projection=1.0, w_exemplar=1.0)
    variants = {"projection": scorer.replace(one, use_exemplars=False),
                "exemplars": scorer.replace(one, use_projection=False),
                "combined": scorer}
    figures: dict = {"fusion": {"w_projection": scorer.fusion.w_projection, "w_exemplar": scorer.fusion.w_exemplar},
                     "train_items": len(corpus.split("train")), "train_entities": len(corpus.entities("train"))}

    # top-1 / top-10 over the whole KB, by why the picture is held out, and by source
    test = corpus.split("test")
    feats = corpus_features(corpus, parts.encoder, test, progress=False)
    gold = np.array([parts.kb.index(it.entity) for it in test])
    layout_config = scorer.exemplars.config if scorer.exemplars is not None else ExemplarConfig()
    layouts = corpus_layouts(corpus, test, layout_config)  # the descriptor the artifact's exemplars hold
    titles = parts.kb.titles
    for why in ("style", "picture", "entity"):
        for source in sorted({it.source for it in test}) + ["all"]:
            mask = np.array([it.heldout == why and source in ("all", it.source) for it in test])
            if mask.sum() == 0:
                continue
            for name, sc in variants.items():
                t1, t10 = topk(sc, feats[mask], gold[mask], parts.kb_vectors, titles, layouts[mask])
                figures[f"{why}/{source}/{name}"] = {"n": int(mask.sum()), "top1": t1, "top10": t10}

    # same-caption groups: choose among the entities sharing the mention, by the image alone
    groups = same_caption_groups(corpus, parts.kb, split="test")
    shared = shared_surfaces(parts.kb, corpus.items)
    index = {it.image: i for i, it in enumerate(test)}
    for name, sc in variants.items():
        members_right, groups_right = 0, 0
        for g in groups:
            cands = sorted(shared[g.mention.lower()] if g.mention.lower() in shared else {m.entity for m in g.members})
            vecs = parts.vectors(cands)
            right = [cands[_argmax_unique(sc.score_batch(feats[index[m.image]][None], vecs, cands,
                                                        layouts[index[m.image]][None])[0])] == m.entity
                     for m in g.members]
            members_right += sum(right)
            groups_right += all(right)
        n_members = sum(len(g.members) for g in groups)
        figures[f"groups/{name}"] = {"groups": len(groups), "members": n_members,
                                     "group_all_right": groups_right / max(len(groups), 1),
                                     "member_right": members_right / max(n_members, 1)}
    figures["groups/text_only_upper_bound"] = text_only_upper_bound(groups)
    figures["groups/list"] = [[g.text, [m.entity for m in g.members]] for g in groups]

    # flags of seen countries in the held-out art style: over the KB and among all flag entities
    flags = flag_set(corpus)
    if flags:
        ff = corpus_features(corpus, parts.encoder, flags, progress=False)
        fl = corpus_layouts(corpus, flags, layout_config)
        fg = np.array([parts.kb.index(it.entity) for it in flags])
        countries = sorted({it.entity for it in corpus.items if it.kind == "flag"})
        local = np.array([countries.index(it.entity) for it in flags])
        for name, sc in variants.items():
            kb1, kb10 = topk(sc, ff, fg, parts.kb_vectors, titles, fl)
            c1, _ = topk(sc, ff, local, parts.vectors(countries), countries, fl)
            figures[f"flags/{name}"] = {"n": len(flags), "top1_kb": kb1, "top10_kb": kb10, "top1_among_flags": c1}
    # pairs: can the scorer tell an entity it never saw from a trained neighbour (and the reverse)?
    seen = np.zeros(len(titles), bool)
    seen[[parts.kb.index(t) for t in corpus.entities("train")]] = True
    for split in ("dev", "test"):
        items = [it for it in corpus.split(split) if it.heldout]
        sf = corpus_features(corpus, parts.encoder, items, progress=False)
        sl = corpus_layouts(corpus, items, layout_config)
        sg = np.array([parts.kb.index(it.entity) for it in items])
        for name, taus in (("projection", (0.0,)), ("combined", PAIR_TAUS)):
            figures[f"pairs/{split}/{name}"] = pairs(variants[name], sf, sg, sl, seen, parts.kb_vectors, titles, taus)
    figures["seconds"] = time.perf_counter() - t0

    for key, value in figures.items():
        if key != "groups/list":
            print(f"{key:32s} {json.dumps(value)}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    h = headline(figures)
    print(f"image_score: in-pool(style) top1={h['style_top1']} top10={h['style_top10']}"
          f" | in-pool(picture) top1={h['picture_top1']}"
          f" | out-of-pool top1={h['entity_top1']} top10={h['entity_top10']}"
          f" | groups all-right={h['groups_all_right']} ({h['groups']} groups; projection {h['groups_projection']},"
          f" exemplars {h['groups_exemplars']})"
          f" | flags top1={h['flags_top1']} (among flags {h['flags_among_flags']}; projection {h['flags_projection']},"
          f" exemplars {h['flags_exemplars']})"
          f" | pairs unseen/seen gold (test) {h['pairs_unseen']}/{h['pairs_seen']}")
    print(" ".join(f"{k}={v}" for k, v in h.items()))
    return 0


def headline(figures: dict) -> dict[str, str]:
    """The headline figures of the combined scorer (and of its parts on groups and flags), formatted."""
    def get(key: str, field: str, fmt: str = "{:.3f}") -> str:
        return fmt.format(figures.get(key, {}).get(field, float("nan")))

    c, parts = "combined", ("projection", "exemplars")
    pair = figures.get("pairs/test/combined", {}).get("tau0.0", {})
    return {"style_top1": get(f"style/all/{c}", "top1"), "style_top10": get(f"style/all/{c}", "top10"),
            "picture_top1": get(f"picture/all/{c}", "top1"),
            "entity_top1": get(f"entity/all/{c}", "top1"), "entity_top10": get(f"entity/all/{c}", "top10"),
            "groups_all_right": get(f"groups/{c}", "group_all_right"),
            "groups": get(f"groups/{c}", "groups", "{:.0f}"),
            **{f"groups_{part}": get(f"groups/{part}", "group_all_right") for part in parts},
            "flags_top1": get(f"flags/{c}", "top1_kb"), "flags_among_flags": get(f"flags/{c}", "top1_among_flags"),
            **{f"flags_{part}": get(f"flags/{part}", "top1_kb") for part in parts},
            "pairs_unseen": _fraction(pair.get("unseen_gold")), "pairs_seen": _fraction(pair.get("seen_gold"))}


def _fraction(value: float | None) -> str:
    return f"{float('nan') if value is None else value:.3f}"


if __name__ == "__main__":
    sys.exit(main())

"""Load test of the annotation store: N writer processes, one killed with SIGKILL, nothing lost.

Each writer process opens the same SQLite store and records corrections as fast as it can for a
few seconds. After `Store.record` returns (the transaction is committed), the writer appends the
correction id to its own log file and flushes + fsyncs it, so the log holds exactly the
acknowledged corrections. Half-way through, writer 0 is killed with SIGKILL (as the OOM killer or
a crashed Space would). Then every acknowledged id is looked up in the database.

    python bench/annotations_load.py [--writers 8] [--seconds 5] [--synchronous NORMAL]

The last line is `writers=<n> acknowledged=<a> lost=<l> errors=<e> rate=<corrections per s>`;
the goals are lost=0, errors=0 and rate >= 500 with 8 writers on 2 cores. errors counts any
exception a writer saw (a "database is locked" escaping the store would be one). ``--smoke`` (seconds): 2
writers for 1 s, writer 0 killed all the same, in a temp dir; the same last line and exit status.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from annotations import Store  # noqa: E402
from bench._smoke import SMOKE_HELP  # noqa: E402

CANDS = [{"name": "Paris", "score": -0.12}, {"name": "Paris, Texas", "score": -0.47}]


def writer(n: int, db: str, logdir: str, synchronous: str, ready, go, seconds: float) -> None:
    """Record corrections until the deadline; log each acknowledged id (fsync'd) and each error."""
    folder = Path(logdir)
    with Store.open(db, config={"synchronous": synchronous}) as store, \
            open(folder / f"writer{n}.ids", "a", encoding="ascii") as log, \
            open(folder / f"writer{n}.errors", "a", encoding="utf-8") as errlog:
        ready.put(n)
        go.wait()
        deadline, i = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            i += 1
            try:
                cid = store.record(f"writer{n}", "candidate" if i % 2 else "nil", "Paris, Texas" if i % 2 else None,
                                   text=f"Writer {n}, item {i}: Obama visits Paris.", mention="Paris",
                                   model_entity="Paris", candidates=CANDS, profile="bench", mapper_version="load")
            except Exception as e:  # noqa: BLE001 - every error is counted, that is the point
                _append(errlog, f"{type(e).__name__}: {e}")
                continue
            _append(log, str(cid))  # only after record() returned: the commit is done


def _append(f, line: str) -> None:
    """Append a line and make it durable before going on (flush + fsync)."""
    f.write(line + "\n")
    f.flush()
    os.fsync(f.fileno())


def acknowledged(logdir: Path, writers: int) -> dict[int, str]:
    """Acknowledged correction id -> annotator, from complete lines of the writers' logs."""
    acks = {}
    for n in range(writers):
        text = (logdir / f"writer{n}.ids").read_text(encoding="ascii")
        for line in text.split("\n")[:-1]:  # a last line without "\n" was cut by the kill: not acknowledged
            acks[int(line)] = f"writer{n}"
    return acks


def errors(logdir: Path, writers: int) -> list[str]:
    return [line for n in range(writers) for line in (logdir / f"writer{n}.errors").read_text().splitlines()]


def lost(db: Path, acks: dict[int, str]) -> list[int]:
    """Acknowledged ids missing from the database (or recorded under another annotator)."""
    conn = sqlite3.connect(db)
    found = dict(conn.execute("SELECT id, annotator FROM corrections"))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "database integrity check failed"
    conn.close()
    return sorted(cid for cid, who in acks.items() if found.get(cid) != who)


def run(writers: int, seconds: float, workdir: Path, synchronous: str = "NORMAL", kill: bool = True,
        start_method: str = "spawn") -> dict:
    """Run the load test in `workdir`; return the figures (see the module docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "load.db"
    Store.open(db).close()  # create the schema once
    ctx: Any = mp.get_context(start_method)
    ready, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=writer, args=(n, str(db), str(workdir), synchronous, ready, go, seconds))
             for n in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    go.set()
    start = time.monotonic()
    if kill and writers > 0:
        time.sleep(seconds / 2)
        os.kill(procs[0].pid, signal.SIGKILL)
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    acks = acknowledged(workdir, writers)
    errs = errors(workdir, writers)
    return {"writers": writers, "acknowledged": len(acks), "lost": len(lost(db, acks)), "errors": len(errs),
            "rate": len(acks) / seconds, "elapsed_s": elapsed, "error_samples": errs[:3],
            "exit_codes": [p.exitcode for p in procs], "db": str(db),
            "per_writer": [sum(who == f"writer{n}" for who in acks.values()) for n in range(writers)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8, help="writer processes (default 8)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each writer writes (default 5)")
    parser.add_argument("--synchronous", default="NORMAL", choices=("NORMAL", "FULL"),
                        help="PRAGMA synchronous in WAL mode (default NORMAL: durable against process kills)")
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="do not SIGKILL writer 0")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the db and logs, kept afterwards (default: a temp dir, removed)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.smoke:  # 2 writers, one killed half-way: every part of the test, in seconds
        args.writers, args.seconds = 2, 1.0
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="annotations_load_") as tmp:
            result = run(args.writers, args.seconds, Path(tmp), args.synchronous, args.kill)
    else:
        result = run(args.writers, args.seconds, args.workdir, args.synchronous, args.kill)
    shown = ("elapsed_s", "exit_codes", "per_writer", "error_samples") + (("db",) if args.workdir else ())
    print(json.dumps({k: result[k] for k in shown}))
    print(f"synchronous={args.synchronous} cores={os.cpu_count()} killed={'writer0' if args.kill else 'none'}")
    print(f"writers={result['writers']} acknowledged={result['acknowledged']} lost={result['lost']} "
          f"errors={result['errors']} rate={result['rate']:.1f}")
    return 0 if result["lost"] == 0 and result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

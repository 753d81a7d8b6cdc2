"""The price of integrity: ledger appends and verification vs plain SQLite inserts.

Reference: the same canonical-JSON payload bytes inserted into a plain SQLite table (sqlite3,
``executemany``, the same WAL + synchronous=FULL settings and the same transaction sizes), in
the same run, three interleaved rounds on fresh databases; medians and the range of ratios. Target: appending and verifying 100,000 entries each cost at most 3x that.

Then a ledger of 1,000,000 entries (built in transactions of 10,000 from one payload template,
so building it takes seconds, not the minutes that a million pydantic records would) is verified
against a checkpoint taken halfway: the whole consistency check, as ``safescale ledger verify
--checkpoint FILE`` runs it (two processes on two cores), and in one process. Target: under
10 s; the reference printed next to each is a plain read-back of the same rows with sqlite3,
measured just before it.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from safescale.ledger import RawRecord, Workspace, _scan, raw_record, read_checkpoint
from safescale.policy import Evidence, Interval

N = 100_000
BATCH = 1_000
SINGLE = 500
ROUNDS = 3
TARGET = 3.0
BIG = 1_000_000
BIG_BATCH = 10_000
BIG_TARGET_S = 10.0


def _records(n: int) -> list[RawRecord]:
    return [
        raw_record(
            Evidence(
                id=f"e{i}",
                model=f"m{i % 7}",
                kind="evaluation",
                subject="cbrn-uplift",
                value=0.25,
                interval=Interval(lo=0.2, hi=0.3),
                n=400,
            )
        )
        for i in range(n)
    ]


def _plain(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, kind TEXT, record_id TEXT, model TEXT, "
               "payload BLOB)")  # fmt: skip
    return db


def _plain_insert(db: sqlite3.Connection, items: list[RawRecord], batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(items), batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO t (kind, record_id, model, payload) VALUES (?, ?, ?, ?)",
                       items[start : start + batch])  # fmt: skip
        db.execute("COMMIT")
    return time.perf_counter() - t0


def _ledger_append(ws: Workspace, items: list[RawRecord], batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(items), batch):
        ws.append_raw(items[start : start + batch])
    return time.perf_counter() - t0


def _row(name: str, ours: float, ref: float, n: int, target: float | None) -> bool:
    ratio = ours / ref
    verdict = "" if target is None else ("  ok" if ratio <= target else f"  MISSED (<= {target}x)")
    print(f"{name:<38} ours {ours:7.2f} s ({n / ours:9.0f}/s)  plain {ref:7.2f} s "
          f"({n / ref:9.0f}/s)  ratio {ratio:5.2f}x{verdict}")  # fmt: skip
    return target is None or ratio <= target


def _round(items: list[RawRecord]) -> dict[str, float]:
    """One round on fresh databases: each side's append, read-back and verify times."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = _plain(root / "plain.sqlite")
        times = {"plain_append": _plain_insert(db, items, BATCH)}
        t0 = time.perf_counter()
        db.execute("SELECT seq, kind, record_id, model, payload FROM t ORDER BY seq").fetchall()
        times["plain_read"] = time.perf_counter() - t0
        with Workspace.init(root / "ws") as ws:
            times["ours_append"] = _ledger_append(ws, items, BATCH)
            t0 = time.perf_counter()
            report = ws.verify()
            times["ours_verify"] = time.perf_counter() - t0
            assert report.ok and report.entries == len(items)
            times["plain_single"] = _plain_insert(db, items[:SINGLE], 1)
            times["ours_single"] = _ledger_append(ws, items[:SINGLE], 1)
        db.close()
    return times


def _big_batches(n: int, batch: int) -> Iterator[list[RawRecord]]:
    """``n`` distinct evidence payloads in batches: one canonical record, its id and model
    substituted (the same bytes that ``raw_record`` gives for each)."""
    head, tail = _records(1)[0].payload.split(b'"id":"e0"')
    before, after = tail.split(b'"model":"m0"')
    for start in range(0, n, batch):
        yield [
            RawRecord("evidence", f"e{i}", f"m{i % 7}",
                      b"".join((head, b'"id":"e%d"' % i, before, b'"model":"m%d"' % (i % 7),
                                after)))
            for i in range(start, min(n, start + batch))
        ]  # fmt: skip


def _read_back(path: Path) -> float:
    db = sqlite3.connect(path)
    t0 = time.perf_counter()
    cursor = db.execute("SELECT * FROM entries ORDER BY seq")
    while cursor.fetchmany(4096):
        pass
    read = time.perf_counter() - t0
    db.close()
    return read


def big_checkpoint_verify(n: int = BIG, rounds: int = 2) -> bool:
    """Verify an ``n``-entry ledger against a checkpoint taken at ``n // 2`` entries, as
    ``safescale ledger verify`` does it (two processes where two cores are there) and in one
    process, each next to a plain read-back of the same rows, ``rounds`` times."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Workspace.init(root / "ws") as ws:
            t0 = time.perf_counter()
            for i, batch in enumerate(_big_batches(n, BIG_BATCH)):
                ws.append_raw(batch)
                if (i + 1) * BIG_BATCH == n // 2:
                    halfway = read_checkpoint(ws.checkpoint_path)  # the workspace's own
            built = time.perf_counter() - t0
            with ws.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            print(f"{n} entries built in {built:.1f} s ({n // BIG_BATCH} transactions)")
            ok = True
            for _ in range(rounds):
                times = {}
                for label, split_from in (
                    ("", _scan.PARALLEL_MIN_ENTRIES),
                    (" (1 process)", n + 1),
                ):
                    _scan.PARALLEL_MIN_ENTRIES, saved = split_from, _scan.PARALLEL_MIN_ENTRIES
                    try:
                        read = _read_back(root / "ws" / "ledger.sqlite")
                        t0 = time.perf_counter()
                        report = ws.verify(checkpoints=[("halfway", halfway)])
                        ours = time.perf_counter() - t0
                    finally:
                        _scan.PARALLEL_MIN_ENTRIES = saved
                    assert report.ok and report.entries == n, report.problems[:3]
                    times[label] = ours
                    verdict = "ok" if ours < BIG_TARGET_S else f"MISSED (< {BIG_TARGET_S:g} s)"
                    name = f"verify {n} --checkpoint{label}"
                    print(f"{name:<38} ours {ours:7.2f} s ({n / ours:9.0f}/s)  plain read-back "
                          f"{read:7.2f} s  ratio {ours / read:5.2f}x  {verdict}")  # fmt: skip
                ok &= times[""] < BIG_TARGET_S
    return ok


def main() -> bool:
    items = _records(N)
    rounds = [_round(items) for _ in range(ROUNDS)]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def spread(ours: str, ref: str) -> str:
        ratios = sorted(r[ours] / r[ref] for r in rounds)
        return f"ratios over {ROUNDS} rounds {ratios[0]:.2f}x-{ratios[-1]:.2f}x"

    print(f"{N} evidence entries ({len(items[0].payload)} payload bytes), transactions of "
          f"{BATCH}; medians of {ROUNDS} interleaved rounds")  # fmt: skip
    append, verify, plain = median("ours_append"), median("ours_verify"), median("plain_append")
    ok = _row(f"append {N} (vs plain inserts)", append, plain, N, TARGET)
    print(f"{'':<38} {spread('ours_append', 'plain_append')}")
    ok &= _row(f"verify {N} (vs plain inserts)", verify, plain, N, TARGET)
    print(f"{'':<38} {spread('ours_verify', 'plain_append')}")
    _row(f"verify {N} (vs plain read-back)", verify, median("plain_read"), N, None)
    single, single_ref = median("ours_single"), median("plain_single")
    _row(f"append {SINGLE}, one per transaction", single, single_ref, SINGLE, None)
    del items  # about 100 MB of records, before the big ledger
    ok &= big_checkpoint_verify()
    return ok


if __name__ == "__main__":
    main()

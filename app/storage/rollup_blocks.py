"""Rollups stored compactly: closed UTC days of `rollup_<res>` folded into `rollup_blocks`, one
row per series, resolution and day (docs/storage.md#rollup-blocks).

The rules that keep every answer exact:

- A stored bucket is in a block or in a row of `rollup_<res>`; where both hold it, the row is
  newer and wins (reads lay rows over blocks).
- The fold takes a day of a series only when none of its buckets has a pending mark, and the
  rows it encodes are exactly the rows it deletes (`DELETE ... RETURNING`), so a row written
  meanwhile stays a row.
- Anything that changes stored buckets of a day first unpacks that day's block back into rows,
  in the transaction that changes them (`unpack_claimed` before the rollup job's
  `store_aggregates`, `unpack_buckets` before a history merge checks and inserts), then does
  what it always did on the rows. Late data into a closed day is rare; a day is at most 1,440
  rows.
- Retention deletes blocks of days before a cut-off and trims the day that straddles it.

The fold, the rollup job and retention run under the job lock, so they never interleave with
each other; writes (history merges) may, and only ever add rows (which win) or unpack.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.rollup import RESOLUTIONS, Buckets, Resolution
from app.storage.blocks.rollup_codec import DAY_MS, DayBuckets, decode_day, encode_day
from app.storage.samples.row_sql import buckets_of, id_list

COLUMNS = "series_id, bucket, count, sum, min, max, sumsq, last, last_ts"
NAMES = COLUMNS.split(", ")
FOLD_MARGIN_MS = 3_600_000  # a day is folded an hour after it is closed (grace included)
KEY = np.dtype([("s", "<i8"), ("b", "<i8")])
NAMES_FIELDS = tuple(Buckets.__dataclass_fields__)
PAIRS_PER_QUERY = 500


@dataclass(frozen=True)
class Folded:
    rows: int = 0
    blocks: int = 0

    def __add__(self, other: Folded) -> Folded:
        return Folded(self.rows + other.rows, self.blocks + other.blocks)


def fold_boundary(closed_before: int, materialized_until: int | None) -> int:
    """The first day not to fold: days that ended an hour before `closed_before` and before
    the resolution's `materialized_until` (so that every bucket of the day is the job's)."""
    if materialized_until is None:
        return -(2**62)
    end = min(closed_before - FOLD_MARGIN_MS, materialized_until)
    return end - end % DAY_MS


def _day(column: str) -> str:
    """SQL: the UTC day start of a bucket column (floor, buckets before 1970 too)."""
    return f"({column} - (({column} % {DAY_MS}) + {DAY_MS}) % {DAY_MS})"


def _keys(series: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    out = np.empty(series.size, dtype=KEY)
    out["s"], out["b"] = series, bucket
    return out


def _days(b: Buckets) -> np.ndarray:
    day: np.ndarray = b.bucket - b.bucket % DAY_MS
    return day


def _day_of(b: Buckets) -> DayBuckets:
    return DayBuckets(b.bucket, b.count, b.sum, b.min, b.max, b.sumsq, b.last, b.last_ts)


def _as_buckets(series: int, day: DayBuckets) -> Buckets:
    ids = np.full(len(day), series, dtype=np.int64)
    return Buckets(
        ids, day.bucket, day.count, day.sum, day.min, day.max, day.sumsq, day.last, day.last_ts
    )


def _concat(parts: Sequence[Buckets]) -> Buckets:
    if not parts:
        return buckets_of([])
    joined = Buckets(*(np.concatenate([getattr(p, n) for p in parts]) for n in NAMES_FIELDS))
    return joined.take(np.lexsort((joined.bucket, joined.sids)))


def _groups(b: Buckets) -> list[tuple[int, int, Buckets]]:
    """(series, day start, its buckets) of buckets sorted by series and bucket."""
    if len(b) == 0:
        return []
    days = _days(b)
    change = np.ones(len(b), dtype=bool)
    change[1:] = (b.sids[1:] != b.sids[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(b))
    return [
        (int(b.sids[a]), int(days[a]), b.take(np.arange(a, z)))
        for a, z in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


async def _blocks(
    conn: AsyncConnection, res: Resolution, where: str
) -> list[tuple[int, int, bytes]]:
    rows = await conn.execute(
        text(
            "SELECT series_id, day_start, payload FROM rollup_blocks b"
            f" WHERE b.resolution = '{res.name}' AND {where}"
        )
    )
    return [(int(s), int(d), bytes(p)) for s, d, p in rows]


Block = tuple[int, Resolution, int, Buckets]  # series, resolution, day start, its buckets


async def _put_blocks(conn: AsyncConnection, blocks: Sequence[Block]) -> None:
    """Upsert blocks, in (series, day, resolution) order: on SQLite, rows appended in this order
    fill the leaf pages better than all of one resolution first (the 1m and 5m payloads of a
    day are 0.5-10 KB, and SQLite appends each row to the last page or a new one)."""
    if not blocks:
        return
    ordered = sorted(blocks, key=lambda k: (k[0], k[2], k[1].ms))
    params = [
        {"s": s, "r": res.name, "d": d, "n": len(b), "p": encode_day(_day_of(b), res.ms)}
        for s, res, d, b in ordered
    ]
    await conn.execute(
        text(
            "INSERT INTO rollup_blocks (series_id, resolution, day_start, count, payload)"
            " VALUES (:s, :r, :d, :n, :p) ON CONFLICT (series_id, resolution, day_start)"
            " DO UPDATE SET count = excluded.count, payload = excluded.payload"
        ),
        params,
    )


async def _delete_blocks(
    conn: AsyncConnection, res: Resolution, keys: Sequence[tuple[int, int]]
) -> None:
    if keys:
        await conn.execute(
            text(
                "DELETE FROM rollup_blocks WHERE series_id = :s AND resolution = :r"
                " AND day_start = :d"
            ),
            [{"s": s, "r": res.name, "d": d} for s, d in keys],
        )


def _overlay(base: Buckets, newer: Buckets) -> Buckets:
    """`base` with the buckets `newer` holds replaced by newer's."""
    if len(newer) == 0:
        return base
    kept = base.take(~np.isin(_keys(base.sids, base.bucket), _keys(newer.sids, newer.bucket)))
    return _concat([kept, newer])


# -- the fold (the compact job) -------------------------------------------------------------


async def fold(conn: AsyncConnection, ids: Sequence[int], before: Mapping[str, int]) -> Folded:
    """Fold the rows of these series' days that end by `before[resolution]` (a day start) and
    hold no pending mark into their blocks (a day's existing block under the rows), in the
    caller's transaction."""
    if not ids:
        return Folded()
    rows, blocks = 0, []
    for res in RESOLUTIONS:
        taken, merged = await _take(conn, res, ids, before[res.name])
        rows += taken
        blocks += [(s, res, d, b) for s, d, b in merged]
    await _put_blocks(conn, blocks)
    return Folded(rows, len(blocks))


async def _take(
    conn: AsyncConnection, res: Resolution, ids: Sequence[int], before: int
) -> tuple[int, list[tuple[int, int, Buckets]]]:
    """Delete the rows to fold of one resolution; their count, and per (series, day) the
    buckets its block is to hold."""
    table, marks = f"rollup_{res.name}", f"rollup_dirty_{res.name}"
    deleted = await conn.execute(
        text(
            f"DELETE FROM {table} WHERE series_id IN ({id_list(ids)}) AND bucket < {int(before)}"
            f" AND NOT EXISTS (SELECT 1 FROM {marks} d WHERE d.series_id = {table}.series_id"
            f" AND d.bucket >= {_day(f'{table}.bucket')}"
            f" AND d.bucket < {_day(f'{table}.bucket')} + {DAY_MS}) RETURNING {COLUMNS}"
        )
    )
    rows = buckets_of(deleted.all())
    groups = _groups(rows)
    if not groups:
        return 0, []
    held = {}
    for first in range(0, len(groups), PAIRS_PER_QUERY):
        chunk = [(s, d) for s, d, _ in groups[first : first + PAIRS_PER_QUERY]]
        held.update({(s, d): p for s, d, p in await _blocks(conn, res, _pairs_condition(chunk))})
    merged = []
    for s, d, b in groups:
        payload = held.get((s, d))
        base = _as_buckets(s, decode_day(payload)) if payload is not None else buckets_of([])
        merged.append((s, d, _overlay(base, b)))
    return len(rows), merged


def _pairs_condition(pairs: Sequence[tuple[int, int]]) -> str:
    """SQL on `b`: the block is one of these (series, day start) pairs."""
    by_series: dict[int, list[int]] = {}
    for s, d in pairs:
        by_series.setdefault(s, []).append(d)
    terms = [
        f"(b.series_id = {int(s)} AND b.day_start IN ({id_list(days)}))"
        for s, days in by_series.items()
    ]
    return "(" + " OR ".join(terms) + ")"


# -- unpacking before a change --------------------------------------------------------------


async def _unpack(conn: AsyncConnection, res: Resolution, where: str) -> int:
    """Turn the blocks `where` names back into rows (rows already there win); their count."""
    found = await _blocks(conn, res, where)
    if not found:
        return 0
    parts = [_as_buckets(s, decode_day(p)) for s, _, p in found]
    rows = _concat(parts)
    lists = [getattr(rows, n).tolist() for n in NAMES_FIELDS]
    await conn.execute(
        text(
            f"INSERT INTO rollup_{res.name} ({COLUMNS})"
            f" VALUES ({', '.join(':' + c for c in NAMES)})"
            " ON CONFLICT (series_id, bucket) DO NOTHING"
        ),
        [dict(zip(NAMES, row, strict=True)) for row in zip(*lists, strict=True)],
    )
    await _delete_blocks(conn, res, [(s, d) for s, d, _ in found])
    return len(found)


def unpack_all(conn: Connection, series_per_chunk: int = 200) -> int:
    """Migration 0008's downgrade (a synchronous connection): every block back into rows of its
    resolution's table (rows already there win), a chunk of series at a time, so that the
    release before rollup blocks finds every bucket. Returns the blocks unpacked."""
    unpacked = 0
    for res in RESOLUTIONS:
        after = -1
        while True:
            ids = [
                int(r[0])
                for r in conn.execute(
                    text(
                        "SELECT DISTINCT series_id FROM rollup_blocks WHERE resolution = :r"
                        " AND series_id > :a ORDER BY series_id LIMIT :n"
                    ),
                    {"r": res.name, "a": after, "n": series_per_chunk},
                )
            ]
            if not ids:
                break
            after = ids[-1]
            found = conn.execute(
                text(
                    "SELECT series_id, payload FROM rollup_blocks WHERE resolution = :r"
                    f" AND series_id IN ({id_list(ids)})"
                ),
                {"r": res.name},
            ).all()
            rows = _concat([_as_buckets(int(s), decode_day(bytes(p))) for s, p in found])
            lists = [getattr(rows, n).tolist() for n in NAMES_FIELDS]
            conn.execute(
                text(
                    f"INSERT INTO rollup_{res.name} ({COLUMNS})"
                    f" VALUES ({', '.join(':' + c for c in NAMES)})"
                    " ON CONFLICT (series_id, bucket) DO NOTHING"
                ),
                [dict(zip(NAMES, row, strict=True)) for row in zip(*lists, strict=True)],
            )
            unpacked += len(found)
    return unpacked


def claimed_folded_on(db: sqlite3.Connection, res: Resolution) -> bool:
    """SQLite, on the writer's thread: whether a bucket of the rollup job's claim (the temp
    table `claimed`) lies in a folded day of `res` (to unpack before its recompute)."""
    found = db.execute(
        "SELECT 1 FROM claimed c JOIN rollup_blocks b ON b.series_id = c.series_id"
        f" AND b.resolution = ? AND b.day_start <= c.bucket AND b.day_start > c.bucket - {DAY_MS}"
        " LIMIT 1",
        (res.name,),
    )
    return found.fetchone() is not None


async def unpack_claimed(conn: AsyncConnection, res: Resolution) -> int:
    """Unpack the blocks of days holding a bucket of the temp table `claimed` (the rollup
    job's claim, dialect.claim_dirty), before the job recomputes those buckets."""
    days = await conn.execute(text(f"SELECT DISTINCT series_id, {_day('bucket')} FROM claimed"))
    return await _unpack_pairs(conn, res, [(int(s), int(d)) for s, d in days])


async def unpack_buckets(
    conn: AsyncConnection, res: Resolution, sids: np.ndarray, buckets: np.ndarray
) -> int:
    """Unpack the blocks of the days of these (series, bucket) pairs (a history merge's)."""
    pairs = np.unique(_keys(sids, buckets - buckets % DAY_MS))
    return await _unpack_pairs(conn, res, [(int(s), int(d)) for s, d in pairs.tolist()])


async def _unpack_pairs(
    conn: AsyncConnection, res: Resolution, pairs: Sequence[tuple[int, int]]
) -> int:
    """Unpack the blocks of these (series, day start) pairs that exist, by their key."""
    unpacked = 0
    for first in range(0, len(pairs), PAIRS_PER_QUERY):
        chunk = pairs[first : first + PAIRS_PER_QUERY]
        unpacked += await _unpack(conn, res, _pairs_condition(chunk))
    return unpacked


# -- reads ----------------------------------------------------------------------------------


async def read(
    conn: AsyncConnection, res: Resolution, ids: Sequence[int], lo: int, hi: int, rows: Buckets
) -> Buckets:
    """The buckets in [lo, hi] that blocks hold for these series, except those `rows` (the
    stored rows read in the same snapshot) hold and those with a pending mark."""
    if not ids:
        return buckets_of([])
    found = await _blocks(
        conn,
        res,
        f"b.series_id IN ({id_list(ids)}) AND b.day_start <= {int(hi)}"
        f" AND b.day_start > {int(lo) - DAY_MS}",
    )
    if not found:
        return buckets_of([])
    every = _concat([_as_buckets(s, decode_day(p)) for s, _, p in found])
    every = every.take((every.bucket >= lo) & (every.bucket <= hi))
    marked = await conn.execute(
        text(
            f"SELECT series_id, bucket FROM rollup_dirty_{res.name} WHERE series_id IN"
            f" ({id_list(ids)}) AND bucket >= {int(lo)} AND bucket <= {int(hi)}"
        )
    )
    pairs = np.array(marked.all(), dtype=np.int64).reshape(-1, 2)
    hidden = np.concatenate([_keys(pairs[:, 0], pairs[:, 1]), _keys(rows.sids, rows.bucket)])
    return every.take(~np.isin(_keys(every.sids, every.bucket), hidden))


# -- retention ------------------------------------------------------------------------------


async def drop_before(
    conn: AsyncConnection, res_name: str, by_cut: Mapping[int, Sequence[int]], width_ms: int
) -> int:
    """Delete the buckets of blocks that start before each cut-off, for that cut-off's series:
    whole days that end by it, and the buckets before it of the day straddling it. Returns how
    many buckets went."""
    removed = 0
    for cut, ids in sorted(by_cut.items()):
        series = id_list(ids)
        gone = await conn.execute(
            text(
                f"DELETE FROM rollup_blocks WHERE resolution = '{res_name}' AND series_id IN"
                f" ({series}) AND day_start + {DAY_MS} <= {int(cut)} RETURNING count"
            )
        )
        removed += sum(int(n) for (n,) in gone)
        straddling = await conn.execute(
            text(
                "SELECT series_id, day_start, payload FROM rollup_blocks WHERE resolution ="
                f" '{res_name}' AND series_id IN ({series}) AND day_start < {int(cut)}"
                f" AND day_start + {DAY_MS} > {int(cut)}"
            )
        )
        for s, d, payload in straddling.all():
            removed += await _trim(conn, res_name, int(s), int(d), bytes(payload), cut, width_ms)
    return removed


async def _trim(
    conn: AsyncConnection, res_name: str, s: int, d: int, payload: bytes, cut: int, width_ms: int
) -> int:
    day = decode_day(payload)
    keep = day.bucket >= cut
    dropped = int(np.count_nonzero(~keep))
    if dropped == 0:
        return 0
    params = {"s": s, "r": res_name, "d": d}
    where = "series_id = :s AND resolution = :r AND day_start = :d"
    if not keep.any():
        await conn.execute(text(f"DELETE FROM rollup_blocks WHERE {where}"), params)
        return dropped
    kept = DayBuckets(*(getattr(day, f)[keep] for f in DayBuckets.__dataclass_fields__))
    await conn.execute(
        text(f"UPDATE rollup_blocks SET count = :n, payload = :p WHERE {where}"),
        {**params, "n": len(kept), "p": encode_day(kept, width_ms)},
    )
    return dropped

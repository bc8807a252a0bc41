"""Streaming import: NDJSON or CSV bodies of any size, read line by line in bounded memory and
committed in chunks.

Every `chunk_size` sample lines are validated (with the same checks and messages as the item form
of `/backfill/import`) and written with one all-or-nothing transaction. A chunk is committed only
once all its lines are valid, so when a line is bad, or a chunk is refused by the store, the chunks
before it stay committed and that chunk and everything after it are not written. The answer says
how much was committed, so a client can resume after the last committed line.

Line numbers are 1-based and physical: the CSV header is line 1 and empty lines count (they are
skipped, not imported).
"""

from __future__ import annotations

import csv
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from app import observability
from app.api.responses import write_counts
from app.errors import BadRequest, LineTooLong, rule_of, status_of
from app.matchers import LABEL_NAME_RE
from app.protocols.native.items import BatchBuilder
from app.schemas import WRITE_COUNTS
from app.storage.store import AppendResult, CardinalityExceeded, HistoryConflict, Store
from app.timeutil import Precision
from app.validation import InvalidInput, TimeBounds

MAX_LINE_BYTES = 1024 * 1024
DEFAULT_CHUNK_SIZE = 10_000
DRAIN_LIMIT = 64 * 1024 * 1024  # read (and drop) at most this much after an error, see _drain
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
CSV_TYPES = frozenset({"text/csv"})
BOM = b"\xef\xbb\xbf"

Format = Literal["ndjson", "csv"]


class StreamingImportResponse(BaseModel):
    """The answer to a streaming (NDJSON or CSV) import."""

    status: str = "ok"
    imported: int = Field(description="Samples stored: raw + rollups_only.")
    lines: int = Field(description="Lines read, counting the CSV header and empty lines.")
    chunks: int = Field(description="Transactions committed, one per `chunk_size` samples.")
    raw: int = Field(description=WRITE_COUNTS["raw"])
    rollups_only: int = Field(description=WRITE_COUNTS["rollups_only"])
    beyond_retention: int = Field(description=WRITE_COUNTS["beyond_retention"])


def streaming_format(content_type: str | None) -> Format | None:
    """`ndjson` or `csv` for the streaming media types; None for anything else (JSON)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in NDJSON_TYPES:
        return "ndjson"
    if media in CSV_TYPES:
        return "csv"
    return None


@dataclass
class StreamFailure(Exception):
    """A chunk the store refused, which stops the import: the refusal and what to say."""

    cause: Exception
    detail: str


async def split_lines(
    chunks: AsyncIterator[bytes], limit: int = MAX_LINE_BYTES
) -> AsyncGenerator[bytes]:
    """The lines of a byte stream, without their `\\n` or `\\r\\n`, whatever the chunk borders.
    Holds at most one line plus one chunk. Each byte is scanned once: a long line arriving in
    many small chunks is searched for its end only in the new bytes."""
    pending = bytearray()
    number = 0
    async for chunk in chunks:
        scanned = len(pending)  # the unfinished line before this chunk has no newline
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", scanned)) >= 0:
            scanned = end + 1
            number += 1
            if end - start > limit + 1:  # +1: a \r that ends the line is not part of it
                raise LineTooLong(number, limit)
            yield _strip_cr(bytes(pending[start:end]), number, limit)
            start = end + 1
        del pending[:start]
        if len(pending) > limit + 1:
            raise LineTooLong(number + 1, limit)
    if pending:
        yield _strip_cr(bytes(pending), number + 1, limit)


def _strip_cr(line: bytes, number: int, limit: int) -> bytes:
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > limit:
        raise LineTooLong(number, limit)
    return line


def _ndjson_item(line: bytes, where: str) -> dict[str, object]:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{where}not valid JSON ({exc})") from None
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}must be a JSON object")
    return item


def _csv_cells(line: bytes, where: str) -> list[str]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}not valid UTF-8") from None
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise InvalidInput(f"{where}not a valid CSV record ({exc})") from None


def _csv_number(cell: str) -> object:
    """A float when the cell reads as one; otherwise the text, for check_value to name."""
    if not cell.strip():
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


FIXED_COLUMNS = ("metric_name", "value", "timestamp")


def _check_header(columns: list[str], where: str) -> list[str]:
    where = f"{where}CSV header: "
    for required in ("metric_name", "value"):
        if required not in columns:
            raise InvalidInput(
                f"{where}column {required!r} required (columns: metric_name, value, "
                "optional timestamp, then one per label)"
            )
    seen: set[str] = set()  # not columns.count(name): that is quadratic in the columns
    for name in columns:
        if name in seen:
            raise InvalidInput(f"{where}column {name!r} appears more than once")
        seen.add(name)
        if name not in FIXED_COLUMNS and not LABEL_NAME_RE.fullmatch(name):
            raise InvalidInput(f"{where}label column {name!r} must match ^[a-zA-Z_][a-zA-Z0-9_]*$")
    return columns


class CsvRows:
    """CSV rows -> items. The first non-empty line is the header: `metric_name`, `value`, optional
    `timestamp`; every other column is a label (an empty cell leaves it out)."""

    def __init__(self, line: bytes, where: str) -> None:
        columns = _check_header([name.strip() for name in _csv_cells(line, where)], where)
        self.width = len(columns)
        self.metric = columns.index("metric_name")
        self.value = columns.index("value")
        self.timestamp = columns.index("timestamp") if "timestamp" in columns else None
        self.labels = [(i, name) for i, name in enumerate(columns) if name not in FIXED_COLUMNS]

    def item(self, line: bytes, where: str) -> dict[str, object]:
        cells = _csv_cells(line, where)
        if len(cells) != self.width:
            raise InvalidInput(
                f"{where}{len(cells)} cells, but the header has {self.width} columns"
            )
        stamp = cells[self.timestamp].strip() if self.timestamp is not None else ""
        return {
            "metric_name": cells[self.metric],
            "value": _csv_number(cells[self.value]),
            "timestamp": stamp or None,
            "labels": {name: cells[i] for i, name in self.labels if cells[i] != ""},
        }


@dataclass
class ChunkedImport:
    """Validates items into the current chunk and commits it every `chunk_size` samples."""

    request: Request
    store: Store
    skew: timedelta
    chunk_size: int
    precision: Precision = "s"
    imported: int = 0
    chunks: int = 0
    committed_lines: int = 0
    lines: int = 0
    done: AppendResult = field(default_factory=AppendResult)  # counts of the committed chunks
    _builder: BatchBuilder | None = None
    _line_numbers: list[int] = field(default_factory=list)

    def add(self, item: dict[str, object], number: int) -> None:
        if self._builder is None:
            self._builder = BatchBuilder(TimeBounds.starting_now(self.skew), self.precision)
        self._builder.add_item(item, f"line {number}: ")
        self._line_numbers.append(number)

    def full(self) -> bool:
        return len(self._line_numbers) >= self.chunk_size

    async def commit(self) -> None:
        """Write the current chunk in one transaction (nothing to do when it is empty)."""
        builder, numbers = self._builder, self._line_numbers
        if builder is None or not numbers:
            return
        try:
            result = await self.store.append(builder.build(), all_or_nothing=True)
        except HistoryConflict as exc:
            raise StreamFailure(exc, f"line {numbers[exc.position]}: {exc}") from None
        except CardinalityExceeded as exc:
            raise StreamFailure(exc, f"lines {numbers[0]}-{numbers[-1]}: {exc}") from None
        observability.count_ingested(self.request, result.written)
        self.imported += result.written
        self.done.raw += result.raw
        self.done.rollups_only += result.rollups_only
        self.done.beyond_retention += result.beyond_retention
        self.chunks += 1
        self.committed_lines = numbers[-1]
        self._builder, self._line_numbers = None, []

    def report(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "committed_lines": self.committed_lines,
            **write_counts(self.done),
        }


async def _consume(lines: AsyncIterator[bytes], job: ChunkedImport, fmt: Format) -> None:
    csv_rows: CsvRows | None = None
    async for line in lines:
        job.lines += 1
        number = job.lines
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if not line.strip():
            continue
        where = f"line {number}: "
        if fmt == "ndjson":
            job.add(_ndjson_item(line, where), number)
        elif csv_rows is None:
            csv_rows = CsvRows(line, where)
            continue
        else:
            job.add(csv_rows.item(line, where), number)
        if job.full():
            await job.commit()
    if fmt == "csv" and csv_rows is None:
        raise InvalidInput("body: a CSV import needs a header line (metric_name,value,...)")
    await job.commit()


async def _drain(chunks: AsyncIterator[bytes], limit: int = DRAIN_LIMIT) -> None:
    """Read and drop what is left of the body (up to `limit` bytes) so the client, still
    sending, gets to read the answer instead of a reset connection."""
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > limit:
                return
    except ClientDisconnect:
        return


def _failure(cause: Exception, detail: str, job: ChunkedImport) -> JSONResponse:
    """The answer to an import stopped by `cause`: its status and reason from the error table,
    with what was committed before it."""
    rule = rule_of(cause)
    job.request.state.rejection_reason = rule.reason if rule else "other"
    body = {"detail": detail, **job.report(), "chunks": job.chunks}
    return JSONResponse(body, status_code=status_of(cause))


async def stream_import(
    request: Request,
    store: Store,
    skew: timedelta,
    fmt: Format,
    chunk_size: int,
    precision: Precision = "s",
) -> JSONResponse:
    """Run a streaming import and build its answer: 201 with the counts, or the error with
    what was committed before it (422 bad line, 413 line too long, 429 cardinality)."""
    job = ChunkedImport(request, store, skew, chunk_size, precision)
    async with aclosing(request.stream()) as source:
        try:
            async with aclosing(split_lines(source)) as lines:
                await _consume(lines, job, fmt)
        except ClientDisconnect:  # nobody to answer; committed chunks stay
            raise BadRequest("body: the client disconnected before sending all of it") from None
        except (InvalidInput, LineTooLong, StreamFailure) as exc:
            await _drain(source)
            if isinstance(exc, StreamFailure):
                return _failure(exc.cause, exc.detail, job)
            return _failure(exc, str(exc), job)
    answer = StreamingImportResponse(
        imported=job.imported, lines=job.lines, chunks=job.chunks, **write_counts(job.done)
    )
    return JSONResponse(answer.model_dump(), status_code=201)

"""`metrics-service import FILE` (also `python -m app.cli import FILE`).

Streams an NDJSON or CSV file to `POST /backfill/import` without reading it into memory (a
progress bar on a terminal), and prints what was imported. On an error it prints the server's
message and how much was committed before it, and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm  # type: ignore[import-untyped]

CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv"}
EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv"}
BLOCK_SIZE = 256 * 1024
TIMEOUT = httpx.Timeout(30.0, read=600.0)  # the last chunk commits after the body is sent


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Stream an NDJSON or CSV file to POST /backfill/import, committed in chunks."
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="an .ndjson/.jsonl or .csv file")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the service's URL")
    parser.add_argument(
        "--format", choices=sorted(CONTENT_TYPES), help="file format (default: from the extension)"
    )
    parser.add_argument(
        "--chunk-size", type=int, help="samples per committed transaction (server default 10,000)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("METRICS_API_KEY"),
        help="write key, when the service sets API_KEYS (default: $METRICS_API_KEY)",
    )


def guess_format(path: Path, given: str | None) -> str:
    if given is not None:
        return given
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise CliError(f"{path}: cannot tell the format from the extension; pass --format")
    return found


def read_blocks(path: Path, progress: Any) -> Iterator[bytes]:
    """The file in blocks, so neither side holds it whole; advances the progress bar."""
    with path.open("rb") as stream:
        while block := stream.read(BLOCK_SIZE):
            progress.update(len(block))
            yield block


def _send(args: argparse.Namespace, fmt: str) -> httpx.Response:
    headers = {"Content-Type": CONTENT_TYPES[fmt]}
    if args.api_key:
        headers["X-API-Key"] = args.api_key
    params = {} if args.chunk_size is None else {"chunk_size": args.chunk_size}
    url = f"{args.base_url.rstrip('/')}/backfill/import"
    size = args.file.stat().st_size
    tty = sys.stderr.isatty()
    with tqdm(total=size, unit="B", unit_scale=True, disable=not tty, file=sys.stderr) as bar:
        try:
            return httpx.post(
                url,
                content=read_blocks(args.file, bar),
                headers=headers,
                params=params,
                timeout=TIMEOUT,
            )
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {args.base_url}: {type(exc).__name__}: {exc}") from None


def _failure_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {response.text[:500]}"
    message = f"HTTP {response.status_code}: {body.get('detail')}"
    if body.get("chunks"):
        message += (
            f"\ncommitted before the error: {body['imported']} samples, lines"
            f" 1-{body['committed_lines']}, in {body['chunks']} chunks; nothing after was written"
        )
    elif "chunks" in body:
        message += "\nnothing was committed"
    return message


def import_file(args: argparse.Namespace) -> str:
    """Run `import`; the summary line on success."""
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    fmt = guess_format(path, args.format)
    started = time.perf_counter()
    response = _send(args, fmt)
    if response.status_code >= 400:
        raise CliError(_failure_message(response))
    body = response.json()
    seconds = time.perf_counter() - started
    return (
        f"imported {body['imported']} samples from {body['lines']} lines"
        f" in {body['chunks']} chunks in {seconds:.1f} s"
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run `import`: the summary line and 0, or the error on stderr and 1."""
    try:
        print(import_file(args))
    except (CliError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; chunks committed so far stay committed", file=sys.stderr)
        return 130
    return 0

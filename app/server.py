"""The HTTP server: uvicorn, with the request-head limits it lacks, however it is started.

uvicorn (0.54) has no limit on the size of a request head with httptools (its default parser),
and no deadline for receiving one: a 50 MB header was read whole, and slowloris connections that
send a header line now and then were held for as long as they liked. Its h11 parser limits the
head's size but not its time. So the protocol classes here extend uvicorn's own two:

- a request head may not exceed HTTP_MAX_HEADER_BYTES (431, connection closed; nothing beyond
  the limit is handed to the parser);
- once a head has begun (on a new connection: once the connection is open), it must be complete
  within HTTP_HEADER_TIMEOUT (408 when part of it came, else the connection is just closed);
- uvicorn's own access log is off: the app logs one line per request (logger `app.access`, path
  only, never the query string), and one for each head refused here.

The limits apply whichever way uvicorn is started: `uvicorn app.main:app ...` (the documented
command, also `make run`), `run()` below (`python -m app.server`, and the packaged `serve`
command), with or without `--workers` or `--reload`. Every one of them imports `app.main` from
uvicorn's `Config.load`, in each worker process, before the server opens its socket; importing
`app.main` calls `adopt_loading_server`, which finds that Config on the call stack and gives it
the limited protocol class. Body limits live in the app itself (app.http_guard), so they hold
under any ASGI server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from app.config import Settings, get_settings

log = logging.getLogger("app.server")
access_log = logging.getLogger("app.access")
APP = "app.main:app"


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int
    timeout_s: float
    log_access: bool

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        return cls(
            settings.http_max_header_bytes,
            settings.http_header_timeout.total_seconds(),
            settings.access_log,
        )


def refusal(status: int, reason: str, detail: str) -> bytes:
    body = orjson.dumps({"detail": detail})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class HeadLimitsMixin:
    """Mixed into uvicorn's H11Protocol and HttpToolsProtocol (see `limited_protocol`). Both
    create `self.cycle` when a request head is complete and call `on_response_complete` after
    each answer; that is all this relies on."""

    limits: HeadLimits
    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False  # the app logs each request (app.access)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._waiting_head = True
        self._seen_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if not self._waiting_head:
            super().data_received(data)  # type: ignore[misc]
            return
        if self._head_timer is None:
            self._arm()  # the first byte of a head on a kept-alive connection
        room = self.limits.max_bytes - self._head_bytes
        head, rest = (data, b"") if len(data) <= room else (data[:room], data[room:])
        self._head_bytes += len(head)
        super().data_received(head)  # type: ignore[misc]
        self._note_head()
        if not rest or self.transport.is_closing():
            return
        if self._waiting_head:
            self._refuse(431, "Request Header Fields Too Large", "HTTP_MAX_HEADER_BYTES")
            return
        super().data_received(rest)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self.transport.is_closing():
            return
        self._note_head()  # a pipelined request may already have its head
        if self.cycle is None or self.cycle.response_complete:
            self._waiting_head, self._head_bytes = True, 0  # the timer starts at its first byte

    def _note_head(self) -> None:
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle
            self._waiting_head = False
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._waiting_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # a connection that never sent anything
            return
        self._refuse(408, "Request Timeout", "HTTP_HEADER_TIMEOUT")

    def _refuse(self, status: int, reason: str, setting: str) -> None:
        what = "larger than" if status == 431 else "not received within"
        detail = f"request head {what} {setting}; closing"
        self.transport.write(refusal(status, reason, detail))
        self.transport.close()
        self._disarm()
        if self.limits.log_access:
            access_log.info("- - %d (%s)", status, detail, extra={"fields": {"status": status}})


_LIMITED: dict[tuple[type, HeadLimits], type] = {}


def limited_protocol(base: type, limits: HeadLimits) -> type:
    """uvicorn's protocol class `base` with the head limits."""
    key = (base, limits)
    if key not in _LIMITED:
        _LIMITED[key] = type(f"Limited{base.__name__}", (HeadLimitsMixin, base), {"limits": limits})
    return _LIMITED[key]


def adopt_loading_server(settings: Settings) -> bool:
    """Give the uvicorn server that is importing the app right now the limited protocol; True if
    there was one to give it to. Called at the import of app.main."""
    if "uvicorn.config" not in sys.modules:
        return False
    from uvicorn.config import Config
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    frame = sys._getframe(1)
    while frame is not None:
        config = frame.f_locals.get("self")
        if isinstance(config, Config) and not config.loaded:
            return _limit(config, settings, (H11Protocol, HttpToolsProtocol))
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _limit(config: Any, settings: Settings, known: tuple[type, ...]) -> bool:
    """Point a uvicorn Config (before or after it resolved its protocol class) at the limited
    form of the class it would use."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    base = getattr(config, "http_protocol_class", None)
    if base is None and isinstance(config.http, str) and not config.http2:
        base = import_from_string(HTTP_PROTOCOLS.get(config.http, config.http))
    elif base is None:
        base = config.http
    if isinstance(base, type) and issubclass(base, HeadLimitsMixin):
        return True
    if not (isinstance(base, type) and issubclass(base, known)):
        log.warning("HTTP head limits not applied: unknown protocol class %r", base)
        return False
    limited = limited_protocol(base, HeadLimits.of(settings))
    config.http = limited
    if getattr(config, "http_protocol_class", None) is not None:
        config.http_protocol_class = limited
    config.access_log = False
    return True


def run(
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    reload: bool = False,
) -> None:
    """Serve the app with uvicorn and every limit (the packaged `serve` command calls this).
    One process serves an app built from `settings`; several workers (or `reload`) each import
    app.main and read the settings from the environment, as `uvicorn app.main:app` does."""
    import uvicorn

    settings = settings or get_settings()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "server_header": False,
    }
    if workers > 1 or reload:
        uvicorn.run(APP, workers=workers, reload=reload, **options)
        return
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from app.main import create_app

    protocol = limited_protocol(AutoHTTPProtocol, HeadLimits.of(settings))
    config = uvicorn.Config(create_app(settings), http=protocol, **options)
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.server", description=run.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)
    run(host=args.host, port=args.port, workers=args.workers, reload=args.reload)


if __name__ == "__main__":
    main()

"""Running the HTTP server under uvicorn: `metrics-service serve` calls `run`.

One process serves the app built from `settings`. With several workers (or `reload`) uvicorn
starts processes that each import `app.main:app`, as `uvicorn app.main:app --workers N` does, so
each reads its settings from the environment: the caller exports what it overrides
(`metrics-service serve --database-url ...` sets `DATABASE_URL`).

uvicorn's own access log is off: the app writes one access line per request (`app.access`,
`ACCESS_LOG`).
"""

from __future__ import annotations

import uvicorn

from app.config import Settings

APP_IMPORT = "app.main:app"


def run(settings: Settings, host: str, port: int, workers: int = 1, reload: bool = False) -> None:
    """Serve until stopped (SIGINT/SIGTERM: in-flight requests finish, the jobs stop cleanly)."""
    if workers > 1 or reload:
        uvicorn.run(
            APP_IMPORT, host=host, port=port, workers=workers, reload=reload, access_log=False
        )
        return
    from app.main import create_app

    uvicorn.run(create_app(settings), host=host, port=port, access_log=False)

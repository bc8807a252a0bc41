"""`python -m app.jobs.compact_job`: fold the head rows of closed 2 h spans into compressed blocks
(STORAGE_LAYOUT=blocks; with the row layout it has nothing to do).

One pass by default; `--loop` keeps running every `--interval` (default COMPACT_INTERVAL)."""

from app.jobs.runner import main

if __name__ == "__main__":
    raise SystemExit(main("compact", description=__doc__))

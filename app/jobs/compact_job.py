"""`python -m app.jobs.compact_job`: fold the head rows of closed 2 h spans into compressed blocks
(STORAGE_LAYOUT=blocks), and the closed days of the rollup tables into rollup blocks (either
layout, docs/storage.md#rollup-blocks).

One pass by default; `--loop` keeps running every `--interval` (default COMPACT_INTERVAL)."""

from app.jobs.runner import main

if __name__ == "__main__":
    raise SystemExit(main("compact", description=__doc__))

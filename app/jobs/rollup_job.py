"""`python -m app.jobs.rollup_job`: materialize closed rollup buckets (1m, 5m, 1h) exactly.

One pass by default; `--loop` keeps running every `--interval` (default ROLLUP_INTERVAL)."""

from app.jobs.runner import main

if __name__ == "__main__":
    raise SystemExit(main("rollup", description=__doc__))

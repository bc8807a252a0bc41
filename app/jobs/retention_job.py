"""`python -m app.jobs.retention_job`: roll up what is pending, then drop expired raw data and
rollups per RETENTION_* and the per-metric overrides.

One pass by default; `--loop` keeps running every `--interval` (default RETENTION_INTERVAL)."""

from app.jobs.runner import main

if __name__ == "__main__":
    raise SystemExit(main("retention", description=__doc__))

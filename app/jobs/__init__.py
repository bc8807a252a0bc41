"""Background jobs: rollup materialization and retention, run by the scheduler or from the CLI."""

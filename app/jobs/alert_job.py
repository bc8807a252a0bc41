"""`python -m app.jobs.alert_job`: evaluate the alert rules over the data since the last run and
deliver the notifications that are due (Alertmanager, webhook). Loads ALERT_RULES_FILE first.

One pass by default; `--loop` keeps running every `--interval` (default ALERT_INTERVAL)."""

from app.jobs.runner import main

if __name__ == "__main__":
    raise SystemExit(main("alert", description=__doc__))

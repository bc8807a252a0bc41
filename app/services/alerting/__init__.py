"""Alerting, pure parts: rules (`rules`), when a series' condition holds (`conditions`), the
pending / firing / resolved state machine (`state`), notification payloads and schedules
(`notify`) and the Prometheus API view of rules and alerts (`prometheus`). The alert job
(app.jobs.alerting) acts on them; SQL lives in app.storage.alerts."""

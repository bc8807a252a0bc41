"""A time-series metrics service: ingestion, exact rollups, retention, anomaly detection."""

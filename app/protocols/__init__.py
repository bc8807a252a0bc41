"""Outside protocols, one package per format, each parsing into `builder.SeriesBuilder`.

Every format turns its wire data into calls of one primitive, `SeriesBuilder.add(metric, labels,
ts_ms, value)` (or its columnar form `add_columns` where a whole series arrives at once, so that no
Python object per sample is made where numpy or the protobuf runtime can avoid it), which builds
the columnar `app.model.SampleBatch` the store writes. Names the protocols allow but our rules do
not are sanitized the Prometheus way (`names`); series that stay invalid are refused one by one
and reported (`report.WriteReport`) while the rest of the request is stored.

- `remote_write`: Prometheus remote write 1.0 (snappy + protobuf, descriptors built at run time)
- `influx`: InfluxDB line protocol
- `vmimport`: VictoriaMetrics JSON lines (`/api/v1/import`)
- `promtext`: Prometheus text exposition (`/api/v1/import/prometheus`)
- `native`: this service's own JSON items and columns (`/metrics/ingest`, `/backfill/import`)
"""

"""Raw-sample I/O behind one protocol (`protocol.SampleStore`) and its implementations: today the
row tables (`rows.RowSampleStore`, with its backends' sides in `sqlite_rows` and
`postgres_rows`). docs/storage.md#the-sample-store-seam."""

"""Compressed sample blocks: pure encoding, merging and aggregation (numpy and pcodec only; no
database access). The design and its measurements: docs/storage-blocks.md.

- `codec`: one raw block of a series (timestamps and values, every float64 bit pattern kept);
- `merge`: late rows into a block, last write wins; spans;
- `aggregates`: bucket aggregates from raw rows and their exact merge;
- `bucket_grid`: the start every payload of bucket aggregates shares;
- `agg_codec`: the aggregates of a series, resolution and span as one payload;
- `rollup_codec`: one rollup block (a series, resolution and UTC day of stored rollups);
- `read`: decode the blocks of a range and lay the head rows over them.
"""

"""Measurements behind docs/storage-blocks.md: block density and speed, rollup layouts, blob
storage in real SQLite and PostgreSQL databases, and where an import's time goes.

    python -m bench.blocks_lab [density rollups sqlite postgres victoriametrics] [--repeat 3]
"""

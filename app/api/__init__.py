"""HTTP layer: thin routes over the store and the pure services."""

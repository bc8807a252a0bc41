"""Storage: the only package that holds SQL."""

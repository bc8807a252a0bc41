"""The benchmark behind `make bench` (not part of the test suite)."""

"""Domain logic with no HTTP in it: rollup arithmetic, anomaly detection, the data generator."""

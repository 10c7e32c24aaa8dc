"""Numbers derived from finished runs: paired statistics, threshold curves, sweeps, COCO export."""

"""The protocol and its rules: maps, boxes, per-image scoring, summaries and threshold sweeps."""

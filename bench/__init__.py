"""WSOL benchmark harness: CAM localization on ILSVRC with the exact devkit protocol."""

__version__ = "0.1.0"

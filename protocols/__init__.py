"""The suite files (*.toml) of this folder, shipped in the wheel as the package ``bench.suites``."""

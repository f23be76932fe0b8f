"""Streamer's benchmarks: `hatch run bench:all` (or `python -m benchmarks`); see README.md."""

"""Benchmarks: in-process Whisper against the same model served over HTTP (run `python -m bench.run`)."""

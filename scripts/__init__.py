"""The benchmarks, run as `python -m scripts.NAME` from the repository's root (README.md here)."""

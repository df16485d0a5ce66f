"""Data pipeline: corpus loading, subword tokenization and token-bucketed batching."""

import datasets

# nmt logs what it loads, filters and encodes; per-call progress bars of `datasets` would only add noise.
datasets.disable_progress_bars()

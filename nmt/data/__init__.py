"""Data pipeline: corpus loading, subword tokenization and token-bucketed batching."""

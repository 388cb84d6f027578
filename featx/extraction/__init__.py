"""Extraction, the first stage: ``plan`` (torch-free: fingerprint, default path, cache hit) and ``run``
(:func:`featx.extraction.run.extract`: images -> backbone -> store, resumable)."""

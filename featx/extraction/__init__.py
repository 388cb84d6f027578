"""Extraction, the first stage: ``options`` (:class:`~featx.extraction.options.ExtractOptions`, what is asked,
checked once), ``plan`` (torch-free: fingerprint, default path, cache hit) and ``run``
(:func:`featx.extraction.run.extract`: images -> backbone -> store, resumable)."""

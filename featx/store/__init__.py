"""The HDF5 feature store, featx's only h5py user: one file per (dataset, fingerprint).

``schema`` (layout, attributes, string encoding, format and structure checks), ``reader``
(:func:`load_features`, :class:`FeatureSet`, :func:`read_snapshot`), ``writer`` (locked,
crash-safe appends, in-place updates, drops and overwrites), ``lock`` (the single-writer
lock), ``sync`` (what differs between a store and its data folder). Layout (any h5py user
can read it; open with ``locking=False`` and use the first ``attrs["rows"]`` rows)::

    /features        float32|float16 (N, D), chunked, rows appended batch by batch
    /labels          int64 (N,)            index into attrs["classes"]
    /ids             str (N,)              image path relative to attrs["data_root"] (file-name bytes)
    /split           str (N,)              "train" | "val" | "test"
    /size, /mtime_ns int64 (N,)            the file's stats when extracted
    /hash            str (N,)              blake2b-128 of the file (with --hash), else ""
    /logits          float32 (N, K)        source-model logits (only with --with-logits)
    /failed/{id,reason,size,mtime_ns}      images that could not be read, why, and their stats
    attrs: format="featx-features", schema_version, rows, generation, classes (JSON),
           fingerprint (JSON), source (JSON), numeric (JSON), hash, backbone (JSON), data_root,
           dataset, layout, split_source, versions (JSON), created, updated, complete (bool)
"""

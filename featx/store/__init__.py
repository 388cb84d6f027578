"""The HDF5 feature store, featx's only h5py user: one file per (dataset, fingerprint).

``schema`` (layout, attributes, format checks), ``reader`` (:func:`load_features`,
:class:`FeatureSet`, the cache-hit test), ``writer`` (locked, resumable appends),
``lock`` (the single-writer lock). Layout (any h5py user can read it; strings are
UTF-8, read them with ``.asstr()``)::

    /features        float32|float16 (N, D), chunked, rows appended batch by batch
    /labels          int64 (N,)            index into attrs["classes"]
    /ids             str (N,)              image path relative to attrs["data_root"]
    /split           str (N,)              "train" | "val" | "test"
    /logits          float32 (N, K)        source-model logits (only with --with-logits)
    /failed/id       str (M,)              images that could not be read ...
    /failed/reason   str (M,)              ... and why
    attrs: format="featx-features", schema_version, classes (JSON list),
           fingerprint (JSON), backbone (JSON), data_root, dataset, layout,
           split_source, versions (JSON), created, updated, complete (bool)
"""

"""Labelled image data: the dataset and the rows every layout builds it from (``dataset``), discovery
of ids, labels and splits in folders and manifests (``discover``) or tar shards (``tars``), the splits
(``splits``), robust image reading (``images``) and the bundled sample set (``samples``). No torch, no h5py."""

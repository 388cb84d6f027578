"""Looking behind the numbers: similar paintings (:mod:`.neighbors`), suspicious labels, near-duplicates and
leaks (:mod:`.audit`), and where the network looked (:mod:`.explain`).

This layer sits above the stages (it reads stores, fitted runs and fine-tuned checkpoints) and below the
Python API. Only the Grad-CAM modules import torch, and only when a map is asked for.
"""

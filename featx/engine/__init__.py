"""The torch runtime shared by extraction, prediction and fine-tuning: ``loader`` (DataLoader of
decoded images) and ``embed`` (device, precision, memory format, the batched embedder)."""

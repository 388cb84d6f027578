"""`featx extract`, `featx info`, `featx backbones` (being written)."""

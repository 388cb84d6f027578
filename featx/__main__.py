"""`python -m featx` = `featx`."""

from .cli import main

main()

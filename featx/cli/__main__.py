"""`python -m featx.cli` = `featx`."""

from . import main

main()

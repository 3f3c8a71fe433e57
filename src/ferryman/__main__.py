"""Allow `python -m ferryman`."""

from ferryman.cli import main

main()

"""`python -m sagesf` is the `sagesf` command."""

from sagesf.cli import main

main()

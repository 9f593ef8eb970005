"""`python -m stackprobe.exporter` is the `stackprobe` command."""

from .cli import main

main()

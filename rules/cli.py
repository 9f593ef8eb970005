"""`gen-rules`: placeholder until the generator lands."""

import sys


def main() -> None:
    sys.exit("gen-rules is not built yet")

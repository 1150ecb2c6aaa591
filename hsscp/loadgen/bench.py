"""``hsscp bench``: placeholder until the benchmark lands."""


def register(subparsers) -> None:
    pass

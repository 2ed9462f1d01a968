"""Placeholder CLI, replaced by the environment core."""


def main(argv: list[str] | None = None) -> int:
    return 0

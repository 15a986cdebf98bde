"""Being written: `graphc viz`."""


def add_subcommand(sub, epilog: str) -> None:
    """Add the subcommand to the CLI's subparsers (nothing yet)."""

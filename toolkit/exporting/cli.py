"""Placeholder: the export command is being built (issue: export-prefix)."""


def add_export_parser(sub) -> None:
    pass

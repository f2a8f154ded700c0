"""CLI: the scheduler (filled in by its feature)."""

commands: list = []

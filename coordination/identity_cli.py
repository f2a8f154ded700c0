"""CLI: identity review (filled in by its feature)."""

commands: list = []

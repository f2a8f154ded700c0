"""Approaches: source records of one company grouped into joint visits and double entries."""

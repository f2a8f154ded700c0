"""Competence needs: the shipped code lists and the mapping of each source's needs onto them.

``codelists`` reads and validates the data files in ``config/codelists/``; ``mapping`` classifies
a delivered need onto the taxonomy. Both are pure: no database, no Flask.
"""

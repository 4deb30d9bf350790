"""Alembic migrations: the only way the schema changes.

``matching-engine migrate`` applies them (``matching_engine.migrate`` does the same from code).
There is no ``alembic.ini``: ``matching_engine.migrate.alembic_config(url)`` builds the
configuration, so a new revision is written with
``alembic.command.revision(alembic_config(url), message=..., autogenerate=True)`` against a
database at head, then reviewed by hand.
"""

"""Alembic migrations of the ledger schema (run through ``safescale.ledger._store.migrate``)."""

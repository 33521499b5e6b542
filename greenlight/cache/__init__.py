"""Caches that stay true: what they hold is checked against the database's change counter."""

"""Maintenance tools for contributors (not needed to use reidkit)."""

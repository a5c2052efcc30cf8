"""Catalog: venues, shows, sessions, seat areas, and the inventory of record."""

"""Spanstream's data contracts: the span and what is derived from it. No I/O here."""

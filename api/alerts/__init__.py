"""The alert engine: turns health records and rule evaluations into incidents and signed webhooks.

It lives under api/ because every API process may run it (docs/alerts.md) and it reuses the
query layer's SLO evaluation; PostgreSQL makes each alert fire once however many run.
"""

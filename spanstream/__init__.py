"""Spanstream's composition root: settings, infrastructure, storage adapters and the CLI.

Code shared by the stream processor (`streams/`) and the query layer (`api/`) that is
neither a contract nor pure logic lives here, so that neither of them imports the other.
"""

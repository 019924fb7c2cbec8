"""The soak: concurrent clients mix reads, writes and deletes against one live server for minutes.

Every client owns the records whose ids start with its prefix (tagged ``owner`` in metadata) in
collections all clients share, so the clients contend for the same writer locks and indexes while
each keeps an exact model of its own records and checks every read of them: read-your-writes,
byte-equal vectors, exact filtered search. ``python -m tests.soak --help``; docs/reliability.md
has the latest report.
"""

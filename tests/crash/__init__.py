"""The crasher: kill -9 a real server at random moments and check it against a model.

``model`` holds what the workload was told was committed, ``workload`` drives the server,
``checker`` compares the restarted server with the model, and ``harness`` runs the kill/restart
cycles (``python -m tests.crash --help``; ``make crash`` runs a long one). See
docs/reliability.md for the method and the latest report.
"""

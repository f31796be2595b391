"""The pieces of the ``nldisco`` command: settings and the run (private)."""

"""The ``gemel`` command line (`gemel.cli.main`) and its sub-commands: eval, fit-ranker, train, corpus."""

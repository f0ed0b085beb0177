"""The ``gemel`` command line (`gemel.cli.main`) and its sub-commands: eval and calibrate, train, corpus."""

"""Data sets and their evaluation: readers of MEL data formats, running a linker over a data set, metrics
and report figures. Tooling: the runtime (`gemel.linker` and what it imports) never imports this package."""

"""Package data: the shipped configs (robots, collection, training, suites, examples), read through
``legadapt.resources``."""

"""Package data: the shipped dynamics models (``*.pt``) and their training reports (``*.json``), read through
``legadapt.resources``."""

"""Shared vocabulary of legadapt: the config schema, robot-state types and reference paths.

Every layer may import this package; it imports no other package of the project.
"""

__version__ = "0.1.0"

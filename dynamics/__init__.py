"""Dynamics models that adapt: Δ-state MLP, MAML (GrBAL), recurrent (ReBAL), datasets, training.

Imports nothing of ``hardware``, ``sim`` or ``controller`` (design.md, "The house").
"""

"""Sampling planners (CEM, MPPI, random shooting) over a batched dynamics callable and a cost.

Imports only torch and numpy: a planner never learns what a robot is (design.md).
"""

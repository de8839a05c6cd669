"""Sampling planners (CEM, iCEM, MPPI with white or coloured noise, random shooting) over a batched dynamics callable and a cost.

Imports only torch and numpy: a planner never learns what a robot is (design.md).
"""

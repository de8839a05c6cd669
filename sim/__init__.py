"""Simulated hexapod: description -> MuJoCo / PyBullet, perturbations, gymnasium env.

Importing ``sim`` registers the gymnasium environment ``legadapt/Hexapod-v0``
(:class:`sim.gym_env.HexapodPathEnv`) lazily: no physics engine is imported here.
"""

from __future__ import annotations

ENV_ID = "legadapt/Hexapod-v0"


def _register_env() -> None:
    try:
        import gymnasium
    except ImportError:  # gymnasium is optional for everything but the environment
        return
    if ENV_ID not in gymnasium.registry:
        # 100 steps = default task.duration (10 s) * task.control_rate (10 Hz)
        gymnasium.register(id=ENV_ID, entry_point="legadapt.sim.gym_env:HexapodPathEnv", max_episode_steps=100)


_register_env()

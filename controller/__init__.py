"""The controller: gait driving, state features, adaptive MPC step, control loop, safety, daemon, CLI."""

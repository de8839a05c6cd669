"""The robot description: legs, joints, geometry, servos and gait groups (:mod:`legadapt.robot.description`)."""

"""Calibration: servo offsets and directions, IMU bias, bus latency, simulator system identification."""

"""Package data: the systemd unit, sysusers.d file and udev rule of a robot install, read through
``legadapt.resources``."""

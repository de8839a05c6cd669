"""``python -m calibration <procedure> ...``: the same as ``legadapt calibrate``."""

import sys

from legadapt.calibration.cli import main

sys.exit(main())

"""Events for what changes during a run: a slip suspected or cleared, the motion-capture stream lost or back,
the adaptive model taking over from the plain one or handing back. Each is logged once, when it changes."""

from __future__ import annotations

from collections.abc import Callable

#: ``event(kind, message, data)``: the daemon's event writer (log channel ``events`` and a status line).
EventFn = Callable[[str, str, dict], None]


class ChangeEvents:
    """What the run last reported for each watched condition, and the event when it changes."""

    def __init__(self, event: EventFn) -> None:
        self.event = event
        self.slipping = False
        self.mocap_streaming = True  # the stream was checked before power (preflight)
        self.adapted = False  # with a plain model: the adaptive model is planning

    def switch(self, st) -> dict:
        """With a plain model (``st``: the cycle's :class:`controller.mpc.CycleStats`): the adaptation channel's
        fields saying which model planned and the plain model's window loss; an event when that changes."""
        if st.adapted is None:
            return {}
        if st.adapted != self.adapted:
            self.adapted = st.adapted
            self.event("adaptation_engaged" if st.adapted else "adaptation_released",
                       f"the plain model's error is {st.plain_recent_loss:.2f} on the newest transitions, "
                       f"{st.plain_loss:.2f} on the window (normalised MSE): "
                       + ("the adaptive model plans" if st.adapted else "it plans again"),
                       {"plain_loss": st.plain_loss, "plain_recent_loss": st.plain_recent_loss})
        return {"adapted": st.adapted, "plain_loss": st.plain_loss}

    def slip(self, source) -> None:
        """An event when the estimator's consistency check starts (or stops) suspecting a slip."""
        slip = source.slip()
        if slip is None or slip.suspected == self.slipping:
            return
        self.slipping = slip.suspected
        data = {"mismatch": slip.mismatch, "threshold": slip.threshold}
        if slip.suspected:
            self.event("slip_suspected", f"the stance feet turn {slip.mismatch:.3f} rad/s RMS off the gyro (limit "
                       f"{slip.threshold:.3f}): a foot slides or a leg no longer carries, and the pose estimate may drift "
                       f"from the truth", data)
        else:
            self.event("slip_cleared", f"the stance feet turn with the gyro again ({slip.mismatch:.3f} rad/s RMS)", data)

    def mocap(self, source) -> None:
        """An event when the motion-capture stream goes quiet (the estimate carries on onboard) or comes back."""
        mocap = getattr(source, "mocap", None)
        if mocap is None or mocap.streaming == self.mocap_streaming:
            return
        self.mocap_streaming = mocap.streaming
        data = dict(vars(mocap.stats))
        if mocap.streaming:
            self.event("mocap_restored", "motion-capture frames arrive again: the estimate is corrected by them", data)
        else:
            mocap.stats.lost += 1
            self.event("mocap_lost", f"no motion-capture frame for {mocap.cfg.timeout:g} s: the estimate carries on from "
                       f"the onboard sensors (IMU, legs{', flow' if source.flow else ''}) until frames come back", data)

"""Every reply the one-byte-checksum bus (:class:`hardware.bus1.OneByteBus`: Dynamixel Protocol 1.0 on
AX/MX, Feetech SCS/STS) can receive leaves it in a known state: a result, or a named BusError; the
port closed by its owner, and a reconnect (a fresh exclusive open of the same pty) working.

The Protocol 1.0 counterpart of ``test_bus_hostile.py``. Real pieces only: the bus talks to a
pseudo-terminal through pyserial (``exclusive=True``), and a thread on the master side answers
every request with a script hypothesis chose: status frames with a valid checksum from the asked
servos or foreign IDs, any error byte, the asked length or another; frames with a broken
checksum, frames cut short, garbage, the echo of our own request, pauses between them.
Where a reply is valid the outcome is known (the data, or the ServoError its error byte means);
where it is not, every outcome must be justified by a frame that was on the wire, and the counters
must agree with the requests the far end saw.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from legadapt.hardware import protocol1 as P1
from legadapt.hardware.bus1 import OneByteBus
from legadapt.hardware.servo_bus import BusError, BusTimeout, PortUnavailable, ServoError
from legadapt.hardware.servo_types import FAMILIES
from bus1_far_end import (FAMILY_NAMES, IDS, LENGTH, OPS, PATIENT, UNICAST_ID, I, Responder, check_counters, data_of, frame,
                          no_reboot, op_ids, op_length, reconnects, run_op, send_only, sequential, split, wire_frames)

EXAMPLES = int(os.environ.get("LEGADAPT_FUZZ_EXAMPLES", "300"))
SMALL = max(20, EXAMPLES // 6)  # per family, for the properties whose replies are valid


@pytest.fixture(scope="module")
def responder():
    r = Responder()
    yield r
    r.close()


# ---------------------------------------------------------------- strategies
asked_or_foreign = st.sampled_from([*IDS, 0, 7, P1.MAX_ID, P1.BROADCAST_ID, 0xFF])
error_bytes = st.one_of(st.just(0), st.sampled_from([0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x24, 0x25, 0x2F,
                                                     0x50, 0x12]), st.integers(0, 255))
params = st.one_of(st.binary(min_size=LENGTH, max_size=LENGTH), st.binary(max_size=2 * LENGTH + 1))
parts = st.one_of(
    st.tuples(st.just("answer"), error_bytes),
    st.tuples(st.just("status"), asked_or_foreign, error_bytes, params),
    st.tuples(st.just("badsum"), asked_or_foreign, error_bytes, params, st.integers(1, 255)),
    st.tuples(st.just("cut"), asked_or_foreign, error_bytes, params, st.integers(1, 5 + LENGTH)),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=12)),
    st.just(("echo",)),
    st.tuples(st.just("pause"), st.sampled_from([0.0005, 0.002])),
)
scripts = st.lists(parts, max_size=5).map(tuple)


# ---------------------------------------------------------------- any reply
@pytest.mark.parametrize("family", FAMILY_NAMES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(OPS), first=scripts, then=scripts, retries=st.integers(0, 2), raise_on_alert=st.booleans())
@example(op="read", first=(("status", 2, 0x08, b""),), then=(), retries=1, raise_on_alert=True)  # a refused READ
@example(op="ping", first=(("echo",), ("answer", 0x01)), then=(), retries=0, raise_on_alert=True)
@example(op="group_read", first=(("garbage", b"\xff\xff\x02"), ("answer", 0x10)), then=(("answer", 0),), retries=1,
         raise_on_alert=False)
def test_any_reply_gives_a_result_or_a_named_bus_error_and_the_port_reopens(responder, family, op, first, then,
                                                                          retries, raise_on_alert):
    responder.play(first, then)
    bus = OneByteBus(responder.path, FAMILIES[family], timeout=0.005, retries=retries, raise_on_alert=raise_on_alert)
    result = error = None
    try:
        result = run_op(bus, op)
    except BusError as exc:  # anything else escaping fails the test
        error = exc
        assert str(exc).strip(), "the error is named"
        assert "failed unexpectedly" not in str(exc), f"a reply no check foresaw: {exc}"
    finally:
        bus.close()  # what every owner of a bus does on error
    assert not bus._ser.is_open
    event(f"{op}: {type(error).__name__ if error else 'result'}")  # --hypothesis-show-statistics
    check_counters(bus, responder, family, op)
    if no_reboot(family, op):
        assert isinstance(error, BusError) and "REBOOT" in str(error)
    frames = wire_frames(responder)
    ids, length = op_ids(op), op_length(op)
    refusal_bits = ~P1.HARDWARE_BITS[FAMILIES[family].maker] & 0x7F

    def accepted(f: P1.Frame, servo_id: int) -> bool:
        """A frame the bus may take as ``servo_id``'s answer: a status of the asked length (a refusal may come
        without data). It may equal a request byte for byte: a PING's input-voltage answer is the PING itself."""
        return f.id == servo_id and (len(f.params) == length or (not f.params and f.code & refusal_bits))

    if error is None and op in ("ping", "write", "reboot"):
        result = {UNICAST_ID: b""}  # no data, but an answer all the same
    if isinstance(result, dict):  # every servo's answer came in a frame of its own, clean
        for servo_id, data in result.items():
            assert any(accepted(f, servo_id) and f.params == data and not split(family, f.code)[0]
                       and not (split(family, f.code)[1] and raise_on_alert) for f in frames), (servo_id, data)
    if isinstance(error, ServoError):
        assert error.servo_id in ids and not send_only(family, op)
        bits = (error.error_number, error.hardware_error or 0)
        assert any(accepted(f, error.servo_id) and split(family, f.code) == bits for f in frames), \
            f"no frame on the wire says {error}"
        assert error.alert == bool(error.hardware_error)
        assert error.error_number or (error.alert and raise_on_alert)
        assert error.hardware_error is None or error.hardware_error & ~P1.HARDWARE_BITS[FAMILIES[family].maker] == 0
        if FAMILIES[family].maker == "ROBOTIS":
            assert not error.error_number & P1.CHECKSUM_BIT, "a checksum refusal is retried, not reported"
        assert bus.stats.servo_errors >= bool(error.error_number) and bus.stats.alerts >= error.alert
        for servo_id, data in error.data.items():  # what the group read did deliver
            assert servo_id in ids and len(data) == length
    if isinstance(error, BusTimeout):
        assert bus.stats.timeouts >= 1
    if error is not None and "corrupt instruction" in str(error):
        assert FAMILIES[family].maker == "ROBOTIS"
        assert any(f.id in ids and f.code & P1.CHECKSUM_BIT for f in frames)
    reconnects(responder, family)


# ---------------------------------------------------------------- valid replies: the outcome is known
def clean_script(family: str, op: str, code: int, culprit: int) -> tuple:
    """The answer to ``op`` with error byte ``code`` from servo ``culprit`` (0 from the others), as explicit frames."""
    return tuple(("status", i, code if i == culprit else 0, data_of(i, op_length(op))) for i in op_ids(op))


UNICAST_OPS = ["ping", "read", "write", "reboot"]


@pytest.mark.parametrize("family", FAMILY_NAMES)
@settings(max_examples=SMALL, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from([*UNICAST_OPS, "group_read"]), code=st.integers(0, 255), culprit=st.sampled_from(IDS),
       raise_on_alert=st.booleans())
@example(op="read", code=0x08, culprit=2, raise_on_alert=True)
@example(op="group_read", code=0x20, culprit=1, raise_on_alert=True)
@example(op="group_read", code=0x48, culprit=2, raise_on_alert=True)
def test_the_error_byte_is_reported_as_the_family_means_it(responder, family, op, code, culprit, raise_on_alert):
    """A valid answer with any error byte: the data, or a ServoError whose error_number / alert / hardware_error
    are the byte's refusal and hardware bits for the family (Dynamixel: 0x25 hardware, the rest refusals;
    Feetech: 0x2F hardware); a Dynamixel checksum refusal (0x10) is retried, then named as a corrupt instruction."""
    assume(not no_reboot(family, op))
    culprit = culprit if op == "group_read" else UNICAST_ID
    ids, length = op_ids(op), op_length(op)
    script = clean_script(family, op, code, culprit)
    fam = FAMILIES[family]
    # a PING answered with error 0x01 (input voltage) is byte for byte the PING itself, a REBOOT answered with 0x08 the
    # REBOOT: the bus takes them for echoes (test_a_ping_answered_with_an_input_voltage_alert_is_no_echo below);
    # the other operations' answers never equal their request
    assume(not (op == "ping" and code == I.PING) and not (op == "reboot" and code == I.REBOOT))
    responder.play(script)
    refused, hardware = split(family, code)
    retried = fam.maker == "ROBOTIS" and code & P1.CHECKSUM_BIT
    with OneByteBus(responder.path, fam, timeout=PATIENT, retries=2, raise_on_alert=raise_on_alert) as bus:
        if retried:
            with pytest.raises(BusError, match=f"servo {culprit} received a corrupt instruction") as info:
                run_op(bus, op)
            assert not isinstance(info.value, ServoError)
            assert bus.stats.retries == 2 and bus.stats.timeouts == 0
        elif refused or (hardware and raise_on_alert):
            with pytest.raises(ServoError) as info:
                run_op(bus, op)
            err = info.value
            assert (err.servo_id, err.error_number, err.alert, err.hardware_error) == \
                (culprit, refused, bool(hardware), hardware or None), (hex(code), err)
            assert f"0x{code & 0x7F:02X}" in str(err) or f"0x{code:02X}" in str(err)
            if op == "group_read":
                sent_on = not (refused and sequential(family, op))  # one READ per servo stops at a refusal
                delivered = [i for i in ids if sent_on and (i != culprit or not refused)]
                assert err.data == {i: data_of(i, length) for i in delivered}
            assert bus.stats.retries == 0, "a servo's answer is final"
            assert (bus.stats.servo_errors, bus.stats.alerts) == (bool(refused), bool(hardware))
        else:
            result = run_op(bus, op)
            if length:
                assert result == {i: data_of(i, length) for i in ids}
            assert bus.stats.retries == 0 and bus.stats.alerts == bool(hardware) and bus.stats.servo_errors == 0
    check_counters(bus, responder, family, op)
    reconnects(responder, family)


@pytest.mark.parametrize("family", ["dynamixel_ax", "dynamixel_mx"])
@pytest.mark.parametrize("op", [*UNICAST_OPS, "group_read"])
def test_a_refusal_is_a_servo_error_with_or_without_data(responder, family, op):
    """A Dynamixel servo refusing a READ answers with its refusal bits and no data (the emulator,
    ``sim/servo_emulator1.py``, does the same): that is a ServoError naming the refusal at once, not a
    'malformed reply' retried."""
    if no_reboot(family, op):
        return
    ids, length = op_ids(op), op_length(op)
    # range error; REBOOT: instruction error (firmware before 41), as a range error its status would equal REBOOT
    code = 0x40 if op == "reboot" else 0x08
    responder.play(tuple(("status", i, code if i == UNICAST_ID else 0, b"" if i == UNICAST_ID else data_of(i, length))
                         for i in ids))
    with OneByteBus(responder.path, FAMILIES[family], timeout=PATIENT, retries=2) as bus:
        with pytest.raises(ServoError, match=f"\\(0x{code:02X}\\)") as info:
            run_op(bus, op)
        err = info.value
        assert (err.servo_id, err.error_number, err.alert, err.hardware_error) == (UNICAST_ID, code, False, None)
        if op == "group_read":
            others = {i: data_of(i, length) for i in ids if i != UNICAST_ID}
            assert err.data == ({} if sequential(family, op) else others)
        assert bus.stats.retries == 0 and bus.stats.malformed == 0 and bus.stats.servo_errors == 1
    check_counters(bus, responder, family, op)


@pytest.mark.parametrize("family", ["dynamixel_ax", "dynamixel_mx", "feetech_sts"])
@pytest.mark.parametrize("op", ["read", "group_read"])
@pytest.mark.parametrize("code", [0x00, 0x20])
def test_a_status_without_its_data_is_malformed_and_retried(responder, family, op, code):
    """A clean status (or one with only an alert: it comes with the data) of the wrong length is noise the one-byte
    checksum let through, or a servo that did not understand: retried, then named."""
    ids, length = op_ids(op), op_length(op)
    responder.play(tuple(("status", i, code if i == UNICAST_ID else 0, b"" if i == UNICAST_ID else data_of(i, length))
                         for i in ids))
    with OneByteBus(responder.path, FAMILIES[family], timeout=PATIENT, retries=1) as bus:
        with pytest.raises(BusError, match="malformed reply \\(wrong length\\) from servo\\(s\\) 2") as info:
            run_op(bus, op)
        assert not isinstance(info.value, ServoError) and info.value.servo_id == UNICAST_ID
        assert bus.stats.retries == 1 and bus.stats.malformed >= 2 and bus.stats.timeouts == 0
    check_counters(bus, responder, family, op)
    reconnects(responder, family)


@pytest.mark.parametrize("family", ["dynamixel_ax", "dynamixel_mx"])
@pytest.mark.parametrize("op", [*UNICAST_OPS, "group_read"])
@pytest.mark.parametrize("with_data", [True, False])
def test_a_checksum_refusal_is_retried(responder, family, op, with_data):
    """0x10: the servo received our instruction damaged; the next attempt's clean answer is the result."""
    if no_reboot(family, op):
        return
    ids, length = op_ids(op), op_length(op)
    damaged = tuple(("status", i, P1.CHECKSUM_BIT if i == UNICAST_ID else 0,
                     data_of(i, length) if with_data or i != UNICAST_ID else b"") for i in ids)
    # one READ per servo (AX): the first one (servo 1) is answered cleanly, servo 2's is damaged once
    responder.play(*(damaged,) * (2 if sequential(family, op) else 1), (("answer", 0),))
    with OneByteBus(responder.path, FAMILIES[family], timeout=PATIENT, retries=2) as bus:
        result = run_op(bus, op)
        if length:
            assert result == {i: data_of(i, length) for i in ids}
        assert bus.stats.retries == 1 and bus.stats.timeouts == 0 and bus.stats.servo_errors == 0
    check_counters(bus, responder, family, op)
    responder.play(damaged)  # damaged every time: named, after every retry
    with OneByteBus(responder.path, FAMILIES[family], timeout=PATIENT, retries=2) as bus:
        with pytest.raises(BusError, match=f"servo {UNICAST_ID} received a corrupt instruction"):
            run_op(bus, op)
        assert bus.stats.retries == 2 and bus.stats.transactions == (2 if sequential(family, op) else 1)
    check_counters(bus, responder, family, op)
    reconnects(responder, family)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@settings(max_examples=SMALL, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from([*UNICAST_OPS, "group_read"]), echoes=st.just(1),
       pause=st.sampled_from([0.0, 0.001, 0.02]))
def test_the_echo_of_the_request_is_ignored_and_the_real_answer_taken(responder, family, op, echoes, pause):
    """A half-duplex adapter hears itself: the exact echo of the request (once: a line carries each frame once) is
    no answer; the bus waits for the real one."""
    assume(not no_reboot(family, op))
    ids, length = op_ids(op), op_length(op)
    responder.play((("echo",),) * echoes + (("pause", pause), ("answer", 0)))
    with OneByteBus(responder.path, FAMILIES[family], timeout=PATIENT, retries=2) as bus:
        result = run_op(bus, op)
        if length:
            assert result == {i: data_of(i, length) for i in ids}
        assert bus.stats.retries == 0 and bus.stats.malformed == 0 and bus.stats.crc_errors == 0
    check_counters(bus, responder, family, op)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("op", ["ping", "read", "write", "group_read"])
def test_only_the_echo_is_a_timeout(responder, family, op):
    responder.play((("echo",),))
    with OneByteBus(responder.path, FAMILIES[family], timeout=0.02, retries=1) as bus:
        bus.echoes = True  # a bus that has seen this line echo (a PING's echo is otherwise also a voltage alert)
        with pytest.raises(BusTimeout, match="no reply from servo"):
            run_op(bus, op)
        assert bus.stats.timeouts == bus.stats.retries + bus.stats.transactions
        assert bus.stats.retries == bus.stats.transactions, "each transaction retried once"
    check_counters(bus, responder, family, op)
    reconnects(responder, family)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@settings(max_examples=SMALL, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(["ping", "read", "write", "group_read"]),
       garbage=st.lists(st.one_of(st.binary(min_size=1, max_size=16),
                                  st.builds(lambda i, p, k: frame(i, 0, p)[:k], asked_or_foreign, params,
                                            st.integers(1, 8)),
                                  st.builds(lambda i, p: frame(i, 0, p)[:-1] + b"\x00", asked_or_foreign, params)),
                        min_size=1, max_size=4).map(b"".join))
@example(op="read", garbage=b"\xff\xff\x02\x06\x00")  # the start of a frame of the right size, never finished
@example(op="group_read", garbage=b"\xff\xff\x01\x03")  # a header whose frame would end inside the answer
@example(op="read", garbage=b"\xff")
def test_a_valid_answer_after_garbage_is_taken(responder, family, op, garbage):
    """Resynchronisation: garbage, frames cut short and frames with a broken checksum before the answer, sent in one
    write, do not hide it (retries allowed: a busy machine may deliver the write in two reads)."""
    ids, length = op_ids(op), op_length(op)
    answer = b"".join(frame(i, 0, data_of(i, length)) for i in ids)
    frames = P1.FrameParser().feed(garbage + answer)
    seen = [f for f in frames if f.id in ids and len(f.params) == length]
    # the one-byte checksum lets some noise through as a frame of an asked servo: that is not what is tested here
    assume(len(seen) == len(ids) and all(f.raw == frame(f.id, 0, data_of(f.id, length)) for f in seen))
    responder.play((("garbage", garbage + answer),))
    with OneByteBus(responder.path, FAMILIES[family], timeout=PATIENT, retries=3) as bus:
        result = run_op(bus, op)
        if length:
            assert result == {i: data_of(i, length) for i in ids}
        framed = sum(len(f.raw) for f in frames) - len(answer)  # valid frames in the garbage are no garbage bytes
        assert bus.stats.garbage_bytes >= len(garbage) - framed
    check_counters(bus, responder, family, op)


@pytest.mark.parametrize("family", ["dynamixel_ax", "feetech_sts"])
def test_a_ping_answered_with_an_input_voltage_alert_is_no_echo(responder, family):
    """No echo on this line (a pty, like a U2D2): the one frame that comes back is the servo's answer, though it
    equals the PING byte for byte (FF FF 02 02 01 FA) -- at the timeout while the bus does not know the line, at
    once when it has seen the line does not echo."""
    responder.play((("status", UNICAST_ID, 0x01, b""),))
    assert frame(UNICAST_ID, 0x01) == P1.ping_packet(UNICAST_ID)
    try:
        with OneByteBus(responder.path, FAMILIES[family], timeout=0.05, retries=0) as bus:
            with pytest.raises(ServoError, match="input voltage") as info:
                bus.ping(UNICAST_ID)
            assert info.value.hardware_error == 0x01 and info.value.alert
    finally:
        responder.settle(1)  # the far end idle before the next test's script


@pytest.mark.parametrize("family", ["dynamixel_ax", "feetech_sts"])
def test_the_bus_learns_whether_the_line_echoes(responder, family):
    """A line that echoes: the request comes back, then the servo's answer equal to it -- both arrive, the second is
    taken at once (not at the timeout). A line that does not: once seen, an answer equal to the request is taken at
    once too."""
    import time as _time
    try:
        with OneByteBus(responder.path, FAMILIES[family], timeout=1.0, retries=0) as bus:
            responder.play((("echo",), ("answer", 0)))  # learn: this line echoes
            bus.read(UNICAST_ID, 36, 2)
            assert bus.echoes is True
            responder.play((("echo",), ("status", UNICAST_ID, 0x01, b"")))
            t0 = _time.monotonic()
            with pytest.raises(ServoError, match="input voltage"):
                bus.ping(UNICAST_ID)
            assert _time.monotonic() - t0 < 0.5, "taken when it came, not at the 1 s timeout"
        responder.settle(1)
        with OneByteBus(responder.path, FAMILIES[family], timeout=1.0, retries=0) as bus:
            responder.play((("answer", 0),))  # learn: no echo
            bus.read(UNICAST_ID, 36, 2)
            assert bus.echoes is False
            responder.play((("status", UNICAST_ID, 0x01, b""),))
            t0 = _time.monotonic()
            with pytest.raises(ServoError, match="input voltage"):
                bus.ping(UNICAST_ID)
            assert _time.monotonic() - t0 < 0.5
    finally:
        responder.settle(1)


# ---------------------------------------------------------------- reboot, the port
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_reboot_only_where_the_family_has_it(responder, family):
    responder.play((("answer", 0),))
    with OneByteBus(responder.path, FAMILIES[family], timeout=PATIENT) as bus:
        if FAMILIES[family].reboot:
            bus.reboot(UNICAST_ID)
            assert responder.settle(1) == 1 and responder.requests == [P1.reboot_packet(UNICAST_ID)]
        else:
            with pytest.raises(BusError, match="no REBOOT instruction") as info:
                bus.reboot(UNICAST_ID)
            assert info.value.servo_id == UNICAST_ID
            assert responder.settle(0) == 0 and bus.stats.transactions == 0, "nothing sent"
    check_counters(bus, responder, family, "reboot")


@pytest.mark.parametrize("family", ["dynamixel_ax", "feetech_sts"])
def test_the_port_is_exclusive_until_closed(responder, family):
    """What makes the reconnect checks above mean something: an open bus holds the port."""
    with OneByteBus(responder.path, FAMILIES[family]):
        with pytest.raises(PortUnavailable, match="another process"):
            OneByteBus(responder.path, FAMILIES[family])
    reconnects(responder, family)

"""The sans-IO engine, in memory: protocol behaviour as byte scripts, and its invariants.

No socket, thread or sleep: requests come out of `ClientEngine` as bytes, and the
server's bytes go in with ``receive_data``. The last part drives the engine with
random calls and random server bytes (hypothesis) and checks its invariants, and
that every change of state is one that `TRANSITIONS` lists.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dugong import (
    BodyFollowing,
    ConnectionClosed,
    DugongError,
    ExcessBodyData,
    HTTPResponse,
    InvalidResponse,
    StateError,
    UnsupportedResponse,
)
from dugong.engine import (
    TRANSITIONS,
    ClientEngine,
    ConnState,
    RecvState,
    SendState,
    States,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def out_bytes(out) -> bytes:
    """What the engine handed out to send, as one bytes object."""
    return b"".join(bytes(p) for p in out) if isinstance(out, tuple) else bytes(out)


def body(eng: ClientEngine, size: int = 7) -> bytes:
    """The rest of the current body, read *size* bytes at a time (all of it is buffered)."""
    parts = []
    while data := eng.read_body(size):
        parts.append(data)
    assert data == b""  # never None: everything was fed
    return b"".join(parts)


def answer(eng: ClientEngine, data: bytes, *, bytewise: bool = False):
    """Feed *data*, whole or a byte at a time; the next response."""
    if not bytewise:
        eng.receive_data(data)
        return eng.next_response()
    resp = None
    for i in range(len(data)):
        assert resp is None
        eng.receive_data(data[i : i + 1])
        resp = eng.next_response()
    return resp


@pytest.fixture
def eng() -> ClientEngine:
    return ClientEngine("example.org")


# ------------------------------------------------------------------ requests


def test_request_bytes(eng):
    out = eng.send_request("GET", "/a?b=c")
    assert out_bytes(out) == (
        b"GET /a?b=c HTTP/1.1\r\nHost: example.org\r\n"
        b"Accept-Encoding: identity\r\nConnection: keep-alive\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert eng.recv_state is RecvState.HEAD
    assert eng.send_request("GET", "/a?b=c") is out  # the same bytes, reused


def test_request_with_body_fields_and_proxy_form():
    eng = ClientEngine(
        "h:8080", target_prefix="http://h:8080", extra_fields=(("Proxy-Authorization", "Basic x"),)
    )
    out = out_bytes(
        eng.send_request("POST", "/p", {"X-A": "1", "proxy-authorization": "no"}, b"data")
    )
    assert out.startswith(b"POST http://h:8080/p HTTP/1.1\r\nX-A: 1\r\nHost: h:8080\r\n")
    assert b"Content-Length: 4\r\n" in out and b"Content-MD5: " in out
    assert b"Proxy-Authorization: Basic x\r\n" in out and b": no" not in out
    assert out.endswith(b"\r\n\r\ndata")


def test_chunked_request_body(eng):
    out = out_bytes(eng.send_request("PUT", "/", body=BodyFollowing()))
    assert b"Transfer-Encoding: chunked\r\n" in out
    assert eng.states.send is SendState.CHUNKED
    assert out_bytes(eng.send_body(b"hello")) == b"5\r\nhello\r\n"
    assert out_bytes(eng.send_body(b"")) == b"0\r\n\r\n"
    assert eng.states.send is SendState.IDLE


def test_length_request_body(eng):
    eng.send_request("PUT", "/", body=BodyFollowing(5))
    assert eng.out_remaining == 5
    with pytest.raises(ExcessBodyData):
        eng.send_body(b"123456")
    assert eng.out_remaining == 5  # a refused call changes nothing
    eng.send_body(b"12")
    assert eng.out_remaining == 3
    with pytest.raises(StateError, match="not been sent completely"):
        eng.next_response()
    with pytest.raises(StateError, match="Cannot send a request"):
        eng.send_request("GET", "/")
    eng.send_body(b"345")
    assert eng.states.send is SendState.IDLE and eng.out_remaining is None
    assert answer(eng, OK).status == 200 and body(eng) == b"abc"


def test_bad_arguments_change_nothing(eng):
    for args, kwargs, error in [
        (("GET", "/ x"), {}, ValueError),
        (("G T", "/"), {}, ValueError),
        (("GET", "/"), {"headers": {"A": "b\r\nc"}}, ValueError),
        (("GET", "/"), {"body": "text"}, TypeError),
        (("GET", "/"), {"expect100": True}, ValueError),
    ]:
        with pytest.raises(error):
            eng.send_request(*args, **kwargs)
    assert not eng.queue and eng.is_idle


# ------------------------------------------------------------------ pipelining, framing


@pytest.mark.parametrize("bytewise", [False, True])
def test_pipelined_responses_in_order(eng, bytewise):
    for path in ("/1", "/2", "/3"):
        eng.send_request("GET", path)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\nX-Sum: 6\r\n\r\n"
    )
    wire = OK + chunked + b"HTTP/1.1 204 No Content\r\n\r\n"
    if bytewise:
        results = []
        for i in range(len(wire)):
            eng.receive_data(wire[i : i + 1])
            resp = eng.next_response() if eng.reader is None and eng.queue else None
            if resp is not None:
                results.append(resp)
            while eng.reader is not None:
                data = eng.read_body(100)
                if not data:
                    break
                results.append(data)
    else:
        eng.receive_data(wire)
        results = []
        for _ in range(3):
            results.append(eng.next_response())
            results.append(body(eng))
    responses = [r for r in results if not isinstance(r, bytes)]
    assert [(r.path, r.status, r.length) for r in responses] == [
        ("/1", 200, 3),
        ("/2", 200, None),
        ("/3", 204, 0),
    ]
    assert b"".join(r for r in results if isinstance(r, bytes)) == b"abcabcde"
    assert responses[1].trailers["x-sum"] == "5, 6"
    assert eng.is_idle and eng.recv_state is RecvState.IDLE and not eng.buffer


def test_bytes_after_a_response_stay_buffered(eng):
    eng.send_request("GET", "/")
    eng.receive_data(OK + b"HTTP/1.1 2")
    eng.next_response()
    assert body(eng) == b"abc"
    assert bytes(eng.buffer.view[eng.buffer.start : eng.buffer.end]) == b"HTTP/1.1 2"


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ],
)
def test_responses_without_body(eng, method, head):
    eng.send_request(method, "/")
    resp = answer(eng, head)
    assert resp.length == 0 and eng.reader is None and eng.read_body(10) == b""


def test_interim_responses_are_skipped(eng):
    eng.send_request("GET", "/")
    resp = answer(eng, b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n" + CONTINUE + OK)
    assert resp.status == 200 and body(eng) == b"abc"


def test_body_until_close(eng):
    eng.send_request("GET", "/")
    resp = answer(eng, b"HTTP/1.0 200 OK\r\n\r\npart one, ")
    assert resp.length is None and eng.states.conn is ConnState.CLOSING
    assert eng.read_body(100) == b"part one, "
    assert eng.read_body(100) is None
    eng.receive_data(b"part two")
    eng.receive_data(b"")  # the close ends this body
    assert eng.read_body(100) == b"part two"
    assert eng.read_body(100) == b""
    assert eng.states.conn is ConnState.CLOSED and eng.states.send is SendState.CLOSED


def test_zero_copy_reads(eng):
    eng.send_request("GET", "/")
    eng.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123")
    eng.next_response()
    assert eng.direct_size(100) == 0  # buffered bytes first
    assert eng.read_body(100) == b"0123"
    assert eng.direct_size(100) == 6 and eng.direct_size(4) == 4
    eng.got_direct(4)  # they went into the caller's own buffer
    assert eng.direct_size(100) == 2
    with pytest.raises(ValueError, match="more than direct_size"):
        eng.got_direct(3)  # more than the body has left
    eng.got_direct(2)
    assert eng.reader is None and eng.read_body(10) == b""
    with pytest.raises(ValueError):
        eng.got_direct(1)  # no body is being read


def test_chunk_data_may_go_direct(eng):
    eng.send_request("GET", "/")
    eng.receive_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n")
    eng.next_response()
    assert eng.read_body(100) is None  # the framing is taken, the data has not come
    assert eng.direct_size(100) == 8
    eng.got_direct(8)
    assert eng.direct_size(100) == 0  # the CRLF after the data is framing
    eng.receive_data(b"\r\n0\r\n\r\n")
    assert eng.read_body(100) == b""


def test_readinto_body(eng):
    eng.send_request("GET", "/")
    eng.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12345")
    eng.next_response()
    buf = bytearray(3)
    assert eng.readinto_body(memoryview(buf)) == 3 and buf == b"123"
    assert eng.readinto_body(memoryview(buf)) == 2 and buf[:2] == b"45"
    assert eng.readinto_body(memoryview(buf)) == 0


# ------------------------------------------------------------------ 100-continue


def expect100(eng: ClientEngine, length: int | None = 4) -> None:
    eng.send_request("PUT", "/up", body=BodyFollowing(length), expect100=True)
    assert eng.states.send is SendState.WAIT100 and eng.awaiting_continue
    with pytest.raises(StateError, match="100 Continue"):
        eng.send_body(b"x")


def test_100_continue_accepted(eng):
    expect100(eng)
    resp = answer(eng, CONTINUE)
    assert resp.status == 100 and eng.states.send is SendState.BODY
    eng.send_body(b"data")
    assert answer(eng, OK).status == 200 and body(eng) == b"abc"
    assert eng.is_idle and eng.states.conn is ConnState.OPEN


def test_100_continue_rejected(eng):
    expect100(eng)
    resp = answer(eng, b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 2\r\n\r\nno")
    assert resp.status == 417
    assert eng.states.send is SendState.CLOSED and eng.states.conn is ConnState.RETIRED
    with pytest.raises(StateError, match="No request body is expected"):
        eng.send_body(b"data")
    assert not eng.needs_new_connection  # its body is still to be read
    with pytest.raises(StateError, match="read its response"):
        eng.send_request("GET", "/")
    assert body(eng) == b"no"
    assert eng.needs_new_connection and eng.is_idle
    with pytest.raises(StateError, match="new connection"):
        eng.send_request("GET", "/")


def test_100_continue_rejected_with_close(eng):
    expect100(eng)
    resp = answer(eng, b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert resp.status == 413
    assert eng.states.conn is ConnState.CLOSED and not eng.needs_new_connection
    assert eng.send_request("GET", "/next") == b""  # not sent: the server closes
    with pytest.raises(ConnectionClosed, match="GET /next was not sent") as info:
        eng.next_response()
    assert info.value.request_sent is False


def test_100_continue_deadline_then_late_answers(eng):
    expect100(eng, None)
    assert eng.next_response() is None  # nothing yet
    resp = eng.continue_assumed()  # the caller's deadline passed
    assert resp.status == 100 and eng.states.send is SendState.CHUNKED
    with pytest.raises(StateError):
        eng.continue_assumed()
    eng.send_body(b"abc")
    eng.send_body(b"")
    assert answer(eng, CONTINUE + OK).status == 200  # the late 100 is skipped
    assert body(eng) == b"abc"


def test_early_final_answer_after_the_deadline_is_the_response(eng):
    expect100(eng)
    eng.continue_assumed()
    eng.send_body(b"da")
    # The server answered without waiting for the rest: the body is unfinished, so
    # reading that answer is refused until it is written (dugong 3.x's rule).
    eng.receive_data(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(StateError):
        eng.next_response()
    eng.send_body(b"ta")
    assert eng.next_response().status == 400


# ------------------------------------------------------------------ closing, failing


def test_announced_close_fails_pipelined_requests(eng):
    for path in ("/1", "/2"):
        eng.send_request("GET", path)
    eng.receive_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n!")
    eng.next_response()
    assert eng.states.conn is ConnState.CLOSING
    assert eng.send_request("GET", "/3") == b""  # not sent on a closing connection
    assert body(eng) == b"!"
    with pytest.raises(ConnectionClosed, match="No response to GET /2") as info:
        eng.next_response()
    assert info.value.request_sent is True and info.value.response_started is False
    with pytest.raises(ConnectionClosed, match="GET /3 was not sent"):
        eng.next_response()
    with pytest.raises(StateError, match="No response is pending"):
        eng.next_response()


@pytest.mark.parametrize(("wire", "started"), [(b"", False), (b"HTTP/1.1 200", True)])
def test_close_before_the_head(eng, wire, started):
    eng.send_request("GET", "/")
    if wire:
        eng.receive_data(wire)
    assert eng.next_response() is None
    with pytest.raises(ConnectionClosed) as info:
        eng.receive_data(b"")
    assert info.value.response_started is started
    assert not eng.queue and eng.states.conn is ConnState.CLOSED


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 10\r\n\r\n12345", b"Transfer-Encoding: chunked\r\n\r\n5\r\n12345"],
)
def test_close_in_the_body(eng, framing):
    eng.send_request("GET", "/")
    answer(eng, b"HTTP/1.1 200 OK\r\n" + framing)
    assert eng.read_body(100) == b"12345"
    with pytest.raises(ConnectionClosed) as info:
        eng.receive_data(b"")
    assert info.value.response_started is True
    with pytest.raises(ConnectionClosed):  # never short data: again on the next read
        eng.read_body(10)


def test_switching_protocols_ends_http_not_the_connection(eng):
    """After a 101 the engine is CLOSED for HTTP and says it `switched`: the new
    protocol's first bytes stay in its buffer, and a request queued next is not sent."""
    eng.send_request("GET", "/", {"Upgrade": "x", "Connection": "Upgrade"})
    eng.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nnew bytes")
    resp = eng.next_response()
    assert (resp.status, resp.length, eng.reader) == (101, 0, None)
    assert eng.switched and eng.states.conn is ConnState.CLOSED
    assert eng.buffer.take(100) == b"new bytes"
    assert eng.send_request("GET", "/next") == b""


def test_other_closes_are_no_switch(eng):
    eng.send_request("GET", "/")
    eng.receive_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    eng.next_response()
    assert eng.states.conn is ConnState.CLOSED and not eng.switched


def test_close_while_idle_is_no_error(eng):
    eng.send_request("GET", "/")
    answer(eng, OK)
    body(eng)
    eng.receive_data(b"")
    assert eng.states.conn is ConnState.CLOSED and eng.read_body(5) == b""


def test_invalid_response_fails_the_engine(eng):
    eng.send_request("GET", "/")
    eng.send_request("GET", "/2")
    with pytest.raises(InvalidResponse):
        answer(eng, b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n")
    assert eng.states.conn is ConnState.FAILED and not eng.is_idle
    for call in (
        eng.next_response,
        lambda: eng.read_body(1),
        lambda: eng.send_request("GET", "/"),
        lambda: eng.send_body(b"x"),
    ):
        with pytest.raises(StateError, match="unusable"):
            call()


def test_framing_error_comes_with_the_first_body_read(eng):
    eng.send_request("GET", "/")
    resp = answer(eng, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert resp.status == 200  # the head can be looked at
    with pytest.raises(UnsupportedResponse):
        eng.read_body(10)
    assert eng.states.conn is ConnState.FAILED


def test_send_failed_lets_the_answer_be_read(eng):
    eng.send_request("PUT", "/", body=BodyFollowing(100))
    eng.send_failed(ConnectionClosed("reset while sending"))
    with pytest.raises(ConnectionClosed, match="reset"):
        eng.send_body(b"more")  # its body is expected, but nothing can be sent
    assert eng.send_request("GET", "/2") == b""
    resp = answer(eng, b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
    assert resp.status == 413
    with pytest.raises(StateError):
        eng.send_body(b"more")  # answered: no body is expected now
    with pytest.raises(ConnectionClosed, match="was not sent"):
        eng.next_response()


def test_withdrawn_request(eng):
    eng.send_request("PUT", "/", body=BodyFollowing(3))
    eng.withdraw(eng.queue[-1])
    assert eng.is_idle and eng.states.send is SendState.IDLE
    assert out_bytes(eng.send_request("GET", "/")).startswith(b"GET")


def test_limits_are_read_from_the_package(eng, monkeypatch):
    import dugong

    monkeypatch.setattr(dugong, "MAX_HEADER_FIELDS", 1)
    eng.send_request("GET", "/")
    with pytest.raises(InvalidResponse, match="Too many header fields"):
        answer(eng, b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n")


# ------------------------------------------------------------------ transitions as data


def test_transition_table_names_are_methods():
    names = {row[0] for row in TRANSITIONS}
    for name in names:
        assert callable(getattr(States, name)), name
    for _name, side, before, after in TRANSITIONS:
        assert side in ("send", "conn")
        assert type(before) is type(after) is (SendState if side == "send" else ConnState)
        assert before is not after


def test_every_transition_keeps_the_invariant():
    """From every state pair allowed by the invariant, each transition moves only along
    rows of TRANSITIONS, and the invariant still holds."""
    from dugong.engine import Request

    allowed = {(row[0], row[1], row[2], row[3]) for row in TRANSITIONS}
    reqs = [
        Request("PUT", "/", e, n, f, True)
        for e in (False, True)
        for n in (None, 0, 5)
        for f in (False, True)
    ]
    calls = {
        "request_sent": [lambda s, r=r: s.request_sent(r) for r in reqs],
        "continue_received": [lambda s, r=r: s.continue_received(r) for r in reqs],
        "body_done": [States.body_done],
        "withdrawn": [States.withdrawn],
        "answered_early": [States.answered_early],
        "server_will_close": [States.server_will_close],
        "response_done": [States.response_done],
        "send_failed": [lambda s: s.send_failed("x")],
        "lost": [lambda s: s.lost("x")],
        "fail": [lambda s: s.fail("x")],
    }
    assert set(calls) == {row[0] for row in TRANSITIONS}
    for send in SendState:
        for conn in ConnState:
            if conn is not ConnState.OPEN and send is not SendState.CLOSED:
                continue  # excluded by the invariant
            for name, variants in calls.items():
                for call in variants:
                    states = States()
                    states.send, states.conn = send, conn
                    if name == "request_sent" and send is not SendState.IDLE:
                        continue  # the engine calls it only when a request may be sent
                    call(states)
                    for side, before, after in (
                        ("send", send, states.send),
                        ("conn", conn, states.conn),
                    ):
                        if before is not after:
                            assert (name, side, before, after) in allowed, (name, before, after)
                    assert states.conn is ConnState.OPEN or states.send is SendState.CLOSED


# ------------------------------------------------------------------ random calls


class Recording(States):
    """States that records each change, to compare with TRANSITIONS."""

    __slots__ = ()
    seen: set[tuple[str, str, object, object]] = set()


def _recording(name):
    original = getattr(States, name)

    def method(self, *args):
        before = (self.send, self.conn)
        original(self, *args)
        for side, old, new in (("send", before[0], self.send), ("conn", before[1], self.conn)):
            if old is not new:
                Recording.seen.add((name, side, old, new))

    return method


for _name in {row[0] for row in TRANSITIONS}:
    setattr(Recording, _name, _recording(_name))

RESPONSES = [
    OK,
    CONTINUE,
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Hints\r\nA: b\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nz",
    b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nbad\r\n\r\n",
]
DOCUMENTED = (DugongError, ValueError, TypeError)


class EngineMachine(RuleBasedStateMachine):
    """Random legal and illegal calls and random server bytes; invariants after each."""

    def __init__(self) -> None:
        super().__init__()
        self.eng = ClientEngine("example.org")
        self.eng.states = Recording()
        self.length: int | None = None  # Content-Length of the response being read
        self.got = 0  # body bytes handed out for it

    def call(self, func, *args):
        try:
            return func(*args)
        except DOCUMENTED:
            return None

    @rule(
        method=st.sampled_from(["GET", "HEAD", "PUT"]),
        body=st.sampled_from([None, b"xy", BodyFollowing(3), BodyFollowing(0), BodyFollowing()]),
        expect=st.booleans(),
    )
    def send_request(self, method, body, expect):
        self.call(self.eng.send_request, method, "/", None, body, expect)

    @rule(
        method=st.sampled_from(["GET", "HEAD"]),
        data=st.sampled_from(RESPONSES),
        body=st.sampled_from([None, BodyFollowing(3), BodyFollowing()]),
        expect=st.booleans(),
    )
    def exchange(self, method, data, body, expect):
        """A whole exchange, as far as it goes: request, body, answer, its body."""
        self.send_request(method, body, expect)
        self.send_body(b"abc")
        self.send_body(b"")
        self.server_answers(data)
        for _ in range(3):
            self.next_response()
            for _ in range(4):
                self.read_body(8)

    @rule(data=st.sampled_from([b"", b"a", b"abc", b"abcd"]))
    def send_body(self, data):
        self.call(self.eng.send_body, data)

    @rule(data=st.sampled_from(RESPONSES))
    def server_answers(self, data):
        if self.eng.states.conn is not ConnState.CLOSED:
            self.call(self.eng.receive_data, data)

    @rule(data=st.binary(min_size=1, max_size=20), rare=st.integers(0, 3))
    def server_sends_anything(self, data, rare):
        if not rare and self.eng.states.conn is not ConnState.CLOSED:
            self.call(self.eng.receive_data, data)

    @rule(rare=st.integers(0, 7))
    def send_fails(self, rare):
        if not rare:
            self.eng.send_failed(ConnectionClosed("broken pipe"))

    @rule(rare=st.integers(0, 3))
    def server_closes(self, rare):
        if not rare and self.eng.states.conn is not ConnState.CLOSED:
            self.call(self.eng.receive_data, b"")

    @rule()
    def next_response(self):
        resp = self.call(self.eng.next_response)
        if resp is not None:
            self.length, self.got = resp.length, 0

    @rule(size=st.integers(1, 10))
    def read_body(self, size):
        data = self.call(self.eng.read_body, size)
        if data:
            self.got += len(data)
            assert len(data) <= size
            if self.length is not None:
                assert self.got <= self.length  # never more than the framing allows

    @rule()
    def continue_assumed(self):
        self.call(self.eng.continue_assumed)

    @precondition(lambda self: self.eng.queue)
    @rule(rare=st.integers(0, 7))
    def withdraw_last(self, rare):
        if not rare:
            self.eng.withdraw(self.eng.queue[-1])

    @rule(rare=st.integers(0, 15))
    def caller_fails(self, rare):
        if not rare:
            self.eng.fail("a test")

    @precondition(lambda self: self.eng.states.conn is not ConnState.OPEN)
    @rule()
    def reset(self):
        self.eng = ClientEngine("example.org")
        self.eng.states = Recording()
        self.length = None

    @invariant()
    def states_hold(self):
        eng = self.eng
        states = eng.states
        assert states.conn is ConnState.OPEN or states.send is SendState.CLOSED
        assert eng.responses_outstanding == len(eng.queue) + (eng.reader is not None)
        assert eng.recv_state is (
            RecvState.BODY
            if eng.reader is not None
            else RecvState.HEAD
            if eng.queue
            else RecvState.IDLE
        )
        if eng.is_idle:
            assert not eng.queue and eng.reader is None
            assert states.conn is not ConnState.FAILED
        if states.conn is ConnState.FAILED:
            assert eng.reader is None
        if eng.needs_new_connection:
            assert states.conn is ConnState.RETIRED
        allowed = {(r[0], r[1], r[2], r[3]) for r in TRANSITIONS}
        assert Recording.seen <= allowed, Recording.seen - allowed


TestEngineMachine = EngineMachine.TestCase
TestEngineMachine.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_the_random_runs_reach_most_transitions():
    """The random calls are varied enough to make most changes of state."""
    from hypothesis.stateful import run_state_machine_as_test

    if len(Recording.seen) < len(TRANSITIONS) * 2 // 3:  # not run already
        run_state_machine_as_test(
            EngineMachine,
            settings=settings(
                max_examples=200,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    missing = {(r[0], r[1], r[2], r[3]) for r in TRANSITIONS} - Recording.seen
    assert len(missing) <= len(TRANSITIONS) // 3, sorted(map(str, missing))


def slots(cls: type) -> set[str]:
    """Every slot of *cls*, its bases' included."""
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


def test_responses_have_every_field_set(eng):
    """The engine fills an HTTPResponse without calling its __init__ (spelled out, for
    speed): a field added to the class must be set there too, also for a head taken
    from the previous one without a parse."""
    for path in ("/1", "/2"):
        eng.send_request("GET", path)
    eng.receive_data(OK + OK)
    for path in ("/1", "/2"):
        resp = eng.next_response()
        assert body(eng) == b"abc"
        for name in slots(HTTPResponse):
            getattr(resp, name)  # AttributeError if the copy left it out
        assert (resp.method, resp.path, resp.status, resp.reason, resp.length) == (
            "GET",
            path,
            200,
            "OK",
            3,
        )
        assert resp._trailers is None and resp.headers["content-length"] == "3"

"""Kubernetes' WebSocket channel framing, resize decoding, and the exec options and statuses around them."""

from __future__ import annotations

import orjson
import pytest
from multidict import MultiDict

from tinykube.apiserver.nodeproxy import stream_params
from tinykube.node.remotecommand import (Options, Refused, _status_bytes, exit_status, internal_error, negotiate,
                                         parse_options, success)
from tinykube.streams import channels
from tinykube.streams.channels import PROTOCOLS, Close, Message, SizeDecoder, TerminalSize

V5, V4, V1 = PROTOCOLS["v5.channel.k8s.io"], PROTOCOLS["v4.channel.k8s.io"], PROTOCOLS["channel.k8s.io"]
V4_BASE64 = PROTOCOLS["v4.base64.channel.k8s.io"]


def test_protocol_table() -> None:
    assert [(p.status_json, p.half_close, p.base64) for p in (V5, V4, V4_BASE64, V1)] == [
        (True, True, False), (True, False, False), (True, False, True), (False, False, False)]
    assert PROTOCOLS["base64.channel.k8s.io"].base64 and not PROTOCOLS[""].base64


def test_binary_messages_lead_with_the_channel_byte() -> None:
    assert channels.encode(V5, channels.STDOUT, b"hi") == b"\x01hi"
    assert channels.decode(V5, b"\x00input") == Message(channels.STDIN, b"input")
    assert channels.decode(V5, b"\x04{}") == Message(channels.RESIZE, b"{}")


def test_base64_messages_are_text() -> None:
    assert channels.encode(V4_BASE64, channels.STDERR, b"\xffx") == "2/3g="
    assert channels.decode(V4_BASE64, "0aGk=") == Message(channels.STDIN, b"hi")
    assert channels.decode(V4_BASE64, "0!!") is None


def test_v5_half_close_only() -> None:
    assert channels.decode(V5, b"\xff\x00") == Close(channels.STDIN)
    assert channels.decode(V5, b"\xff\x00\x00") is None
    assert channels.decode(V4, b"\xff\x00") == Message(255, b"\x00")  # before v5 it is just an unknown channel
    assert channels.decode(V5, b"") is None


def test_sizes_arrive_in_any_chunks() -> None:
    decoder = SizeDecoder()
    assert decoder.feed(b'{"Width":80,"Hei') == []
    assert decoder.feed(b'ght":24}\n{"width":100,"height":30}{"Width":1') == [TerminalSize(80, 24), TerminalSize(100, 30)]
    assert decoder.feed(b"}") == [TerminalSize(1, 0)]
    assert decoder.feed(b"not json") == [] and decoder.broken


def test_options_follow_the_kubelet() -> None:
    assert parse_options({"stdout": "1", "stderr": "1", "tty": "1"}) == Options(False, True, False, True)
    assert parse_options({"stdin": "true", "stdout": "True"}) == Options(True, True, False, False)
    with pytest.raises(Refused) as e:
        parse_options({"tty": "1"})
    assert (e.value.code, e.value.message) == (400, "you must specify at least 1 of stdin, stdout, stderr")


def test_statuses_as_kubectl_reads_them() -> None:
    assert orjson.loads(_status_bytes(V4, success())) == {"metadata": {}, "status": "Success"}
    assert orjson.loads(_status_bytes(V5, exit_status(["sh", "-c", "exit 3"], 3))) == {
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert _status_bytes(V1, success()) == b""
    assert _status_bytes(V1, internal_error("boom")) == b"Internal error occurred: boom"


def test_protocol_negotiation() -> None:
    offered = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"]
    assert negotiate(offered, ("v4.channel.k8s.io", "v3.channel.k8s.io")) == "v4.channel.k8s.io"
    with pytest.raises(Refused) as missing:
        negotiate([], ("portforward.k8s.io",))
    assert missing.value.code == 400
    with pytest.raises(Refused) as unknown:
        negotiate(["v9"], ("portforward.k8s.io",))
    assert unknown.value.code == 403


def test_the_api_server_passes_options_as_the_kubelet_expects() -> None:
    query = MultiDict([("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("stdin", "False"),
                       ("stdout", "true"), ("stderr", "True"), ("tty", "0"), ("container", "c")])
    assert stream_params("exec", query) == [("stdout", "1"), ("stderr", "1"), ("command", "sh"), ("command", "-c"),
                                            ("command", "echo hi")]
    assert stream_params("attach", query) == [("stdout", "1"), ("stderr", "1")]
    assert stream_params("portforward", MultiDict([("ports", "80"), ("ports", "81,82")])) == [("port", "80,81,82")]
    assert stream_params("portforward", MultiDict()) == []

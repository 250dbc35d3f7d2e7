"""The SPDY/3.1 codec and the server connection, against frames kubectl really sends."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from tinykube.streams import spdy
from tinykube.streams.spdyconn import MAX_DATA, SpdyConnection, SpdyStream

# kubectl 1.32 port-forward, first connection: SYN_STREAM 1 (error), its FIN, SYN_STREAM 3 (data) whose
# header block continues the same zlib stream, then "GET " on stream 3 (from its -v=7 tunnel log).
KUBECTL = bytes.fromhex(
    "800300010000003D" "00000001" "00000000" "0000"  # SYN_STREAM 1, then its compressed header block:
    "78F9E3C6A7C202253A703A2B294A4DCC851625ACA9A0808614CB45A024CC6461C0C0C0C0590489C44C50E266340000" "0000FFFF"
    "00000001" "01000000"  # DATA 1, FIN, empty
    "8003000100000018" "00000003" "00000000" "0000" "C2AA15540A2512D209000000FFFF"  # SYN_STREAM 3
    "00000003" "00000004" "47455420")  # DATA 3 "GET "
KUBECTL_FRAMES: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}),
    spdy.Data(1, b"", fin=True),
    spdy.SynStream(3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}),
    spdy.Data(3, b"GET "),
]
EVERY_FRAME: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": ["stdout"], "multi": ["a", "b"]}, associated_id=0, priority=3, fin=True),
    spdy.SynReply(1, {"x": ["y"]}, fin=True), spdy.Headers(3, {"k": ["v"]}), spdy.RstStream(5, spdy.CANCEL),
    spdy.Settings(((1, 7, 65536), (0, 4, 100)), clear=True), spdy.Ping(7), spdy.GoAway(9, 1),
    spdy.WindowUpdate(3, 1000), spdy.Data(3, b"\x00\xffdata", fin=True),
]


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2  # the DICTID in every Go header block (78 F9 E3C6A7C2)
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b",*,enq=0.")


def test_reads_what_kubectl_writes() -> None:
    assert spdy.FrameReader().feed(KUBECTL) == KUBECTL_FRAMES


def test_frames_split_anywhere() -> None:
    reader = spdy.FrameReader()
    frames = [f for i in range(len(KUBECTL)) for f in reader.feed(KUBECTL[i:i + 1])]
    assert frames == KUBECTL_FRAMES


def test_every_frame_round_trips_through_one_compression_context() -> None:
    writer, reader = spdy.FrameWriter(), spdy.FrameReader()
    wire = b"".join(writer.encode(f) for f in EVERY_FRAME * 2)  # later header blocks refer back to earlier ones
    assert reader.feed(wire) == EVERY_FRAME * 2


def test_data_frame_layout() -> None:
    assert spdy.FrameWriter().encode(spdy.Data(5, b"x", fin=True)) == b"\x00\x00\x00\x05\x01\x00\x00\x01x"


def test_control_frame_layout() -> None:
    assert spdy.FrameWriter().encode(spdy.Ping(3)) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x03"
    assert spdy.FrameWriter().encode(spdy.RstStream(3, 5)) == bytes.fromhex("800300030000000800000003" "00000005")


def test_header_block_before_compression() -> None:
    raw = spdy.encode_headers({"Port": ["80"], "v": ["a", "b"]})
    assert raw == (struct.pack(">I", 2) + struct.pack(">I", 4) + b"port" + struct.pack(">I", 2) + b"80"
                   + struct.pack(">I", 1) + b"v" + struct.pack(">I", 3) + b"a\0b")
    assert spdy.decode_headers(raw) == {"port": ["80"], "v": ["a", "b"]}


def test_unknown_control_frames_are_skipped() -> None:
    unknown = b"\x80\x03\x00\x0a\x00\x00\x00\x02zz"  # type 10 (CREDENTIAL)
    assert spdy.FrameReader().feed(unknown + spdy.FrameWriter().encode(spdy.Ping(1))) == [spdy.Ping(1)]


@pytest.mark.parametrize("wire", [
    b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",  # SPDY/2
    b"\x80\x03\x00\x02\x00\x00\x00\x08\x00\x00\x00\x01garbage!",  # a header block that is not zlib
    b"\x80\x03\x00\x03\x00\x00\x00\x02\x00\x00",  # a truncated RST_STREAM
])
def test_broken_framing_is_an_error(wire: bytes) -> None:
    with pytest.raises(spdy.SpdyError):
        spdy.FrameReader().feed(wire)


# ---- the connection ------------------------------------------------------------------------------

class Pipe:
    """The client end of an in-memory byte stream: what we send is read by the connection."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent = bytearray()
        self.closed = False
        self._writer = spdy.FrameWriter()
        self._reader = spdy.FrameReader()

    def send(self, *frames: spdy.Frame) -> None:
        self.incoming.put_nowait(b"".join(self._writer.encode(f) for f in frames))

    def received(self) -> list[spdy.Frame]:
        frames = self._reader.feed(bytes(self.sent))
        self.sent.clear()
        return frames

    async def read(self) -> bytes:
        return await self.incoming.get()

    async def write(self, data: bytes) -> None:
        self.sent += data

    async def close(self) -> None:
        self.closed = True
        self.incoming.put_nowait(b"")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def serving(accept: bool = True) -> tuple[Pipe, SpdyConnection, list[SpdyStream], asyncio.Task[None]]:
    pipe, opened = Pipe(), []

    def on_stream(stream: SpdyStream) -> bool:
        opened.append(stream)
        return accept
    conn = SpdyConnection(pipe, on_stream)
    return pipe, conn, opened, asyncio.create_task(conn.serve())


async def test_streams_are_replied_and_carry_data_until_fin() -> None:
    pipe, conn, opened, task = await serving()
    pipe.send(spdy.SynStream(1, {"streamtype": ["stdin"]}), spdy.Data(1, b"abc"), spdy.Data(1, b"", fin=True))
    await settle()
    assert pipe.received() == [spdy.SynReply(1)]
    assert opened[0].header("StreamType") == "stdin"
    assert [await opened[0].read(), await opened[0].read()] == [b"abc", b""]
    await opened[0].write(b"x" * (MAX_DATA + 1))
    await opened[0].close()
    assert pipe.received() == [spdy.Data(1, b"x" * MAX_DATA), spdy.Data(1, b"x"), spdy.Data(1, b"", fin=True)]
    await pipe.close()
    await task


async def test_refused_streams_are_reset() -> None:
    pipe, conn, opened, task = await serving(accept=False)
    pipe.send(spdy.SynStream(1, {"port": ["x"]}))
    await settle()
    assert pipe.received() == [spdy.RstStream(1, spdy.CANCEL)]
    await pipe.close()
    await task


async def test_client_pings_are_echoed_and_stream_ids_must_grow() -> None:
    pipe, conn, opened, task = await serving()
    pipe.send(spdy.Ping(1), spdy.Ping(2), spdy.SynStream(3), spdy.SynStream(1), spdy.Settings(), spdy.WindowUpdate(3, 9))
    await settle()
    assert pipe.received() == [spdy.Ping(1), spdy.SynReply(3), spdy.RstStream(1, spdy.PROTOCOL_ERROR)]
    await pipe.close()
    await task


async def test_a_reset_from_the_client_ends_the_stream_both_ways() -> None:
    pipe, conn, opened, task = await serving()
    pipe.send(spdy.SynStream(1), spdy.Data(1, b"lost?"), spdy.RstStream(1, spdy.CANCEL))
    await settle()
    pipe.received()
    assert await opened[0].read() == b""
    await opened[0].write(b"dropped")
    assert pipe.received() == []
    await pipe.close()
    await task


async def test_end_of_connection_ends_every_stream_and_close_says_goaway() -> None:
    pipe, conn, opened, task = await serving()
    pipe.send(spdy.SynStream(1), spdy.SynStream(3))
    await settle()
    await pipe.close()
    await task
    assert conn.closed.is_set()
    assert [await s.read() for s in opened] == [b"", b""]
    conn2_pipe, conn2, _, task2 = await serving()
    conn2_pipe.send(spdy.SynStream(5))
    await settle()
    await conn2.close(grace=0)
    assert conn2_pipe.received() == [spdy.SynReply(5), spdy.GoAway(5)]
    assert conn2_pipe.closed
    await task2

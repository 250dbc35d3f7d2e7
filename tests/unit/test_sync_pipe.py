"""conmon's sync pipe is read without closing a descriptor twice under uvloop."""

from __future__ import annotations

import asyncio
import os

import uvloop

from tinykube.node.runtime.containers import _read_line


def test_reading_the_sync_pipe_leaves_a_reused_descriptor_number_alone() -> None:
    async def scenario() -> bool:
        r, w = os.pipe2(os.O_CLOEXEC)
        with os.fdopen(r, "rb", 0) as sync:
            os.write(w, b'{"data": 42}\n')
            assert await _read_line(sync) == b'{"data": 42}\n'
        os.close(w)
        reused_r, reused_w = os.pipe()  # takes the numbers just freed, as an accepted socket would
        await asyncio.sleep(0.01)  # uvloop closes a transport's descriptor a loop turn later
        try:
            os.fstat(reused_r)
            return True
        except OSError:
            return False
        finally:
            for fd in (reused_r, reused_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    assert uvloop.run(scenario())

"""An import is read, checked and encoded in a process of its own, at a lower CPU priority.

An import is megabytes of JSON that one user sends and nobody else waits for. Read in the API's
event loop, even in slices, it made every other request wait a slice at each of its awaits (a
sync awaits a dozen times); a thread would hold the GIL as long. So the API hands the body to a
child process (``python -m vaultapi.import_worker``, at nice +NICENESS, one per import, gone with
its memory once it answered), which checks it as the routes check items and encodes the rows in
batches for the database; the API keeps the database work alone (vaultapi.models.ciphers).
IMPORTS_AT_ONCE bounds the children of one API process.

Between the two, over the child's stdin and stdout: a line of JSON (which import, its limits),
then the body; back, frames of a kind byte and a 4-byte length: ``E`` an ApiError as JSON, or
``H`` the import's folders or collections and item count as JSON followed by one ``B`` frame per
batch of rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import sys
import weakref
from collections.abc import AsyncIterator
from typing import Any

from vaultapi.errors import ApiError

__all__ = ["IMPORTS_AT_ONCE", "NICENESS", "prepare"]

#: how much lower the child's CPU priority is: interactive requests (the API's event loop and
#: the database's work for them) come first when the cores are busy
NICENESS = 10
#: children of one API process at once; the next import waits for its turn
IMPORTS_AT_ONCE = 1
#: seconds a child may take to read an import (32 MiB take a few at most, on a busy core); under
#: Sanic's RESPONSE_TIMEOUT (60 s), so that the client gets this module's answer, not Sanic's
READ_TIMEOUT = 45.0
#: what the child's environment keeps of the API's: no database URL, key passphrase or mail
#: password goes to a process that parses a stranger's JSON
_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE")

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!cI")
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def prepare(kind: str, body: bytes, **limits: Any) -> tuple[list[Any], int, list[str]]:
    """The import's groups (folders or collections, as sent), its item count and its rows in
    batches of JSON, as vaultapi.models.ciphers.prepared_import makes them; an ApiError for a
    body the routes would refuse."""
    loop = asyncio.get_running_loop()
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = asyncio.Semaphore(IMPORTS_AT_ONCE)
    async with turn:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vaultapi.import_worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            # a traceback could quote what the client sent: the child's failure is logged here
            stderr=asyncio.subprocess.DEVNULL,
            # the modules where this process found them, whatever its working folder
            env=child_environment())
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                return await _exchange(child, kind, body, limits)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError, ConnectionError):
            pass  # answered below, once the child is gone
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
    log.warning("an import's reader ended without an answer (exit status %s)", child.returncode)
    raise ApiError("The import could not be read. Try again.", status=503)


def child_environment() -> dict[str, str]:
    """The child's environment: this process's modules, wherever it found them, and little else."""
    return {**{name: os.environ[name] for name in _ENVIRONMENT if name in os.environ},
            "PYTHONPATH": os.pathsep.join(sys.path)}


async def _exchange(child: asyncio.subprocess.Process, kind: str, body: bytes,
                    limits: dict[str, Any]) -> tuple[list[Any], int, list[str]]:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps({"kind": kind, **limits}).encode() + b"\n")
    child.stdin.write(body)
    await child.stdin.drain()
    child.stdin.close()
    # its rows are the body's, and JSON's escapes take at most six bytes for one
    frames = _frames(child.stdout, 6 * len(body) + 2**20)
    kind_of, head = await anext(frames)
    if kind_of == b"E":
        error = json.loads(head)
        raise ApiError(error["message"], status=error["status"], field=error["field"])
    shape = json.loads(head)
    batches = []
    for _ in range(shape["batches"]):
        _, batch = await anext(frames)
        batches.append(batch.decode())
    return shape["groups"], shape["count"], batches


async def _frames(stream: asyncio.StreamReader, limit: int) -> AsyncIterator[tuple[bytes, bytes]]:
    """The child's frames, up to ``limit`` bytes in all: a child gone wrong is ended, not buffered."""
    while True:
        kind, length = _HEADER.unpack(await stream.readexactly(_HEADER.size))
        limit -= _HEADER.size + length
        if limit < 0:
            raise ValueError("the import's reader answered more than it was sent")
        yield kind, await stream.readexactly(length)


def _write_frame(kind: bytes, payload: bytes) -> None:
    sys.stdout.buffer.write(_HEADER.pack(kind, len(payload)) + payload)


def main() -> None:
    os.nice(NICENESS)
    from vaultapi.models import ciphers  # the child's own work, after the priority is set

    request = json.loads(sys.stdin.buffer.readline())
    body = sys.stdin.buffer.read()
    try:
        groups, count, batches = asyncio.run(ciphers.prepared_import(request.pop("kind"), body, **request))
    except ApiError as error:
        _write_frame(b"E", json.dumps({"message": error.message, "status": error.status, "field": error.field}).encode())
    else:
        _write_frame(b"H", json.dumps({"groups": groups, "count": count, "batches": len(batches)}).encode())
        for batch in batches:
            _write_frame(b"B", batch.encode())
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()

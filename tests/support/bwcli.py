"""The official `bw` CLI (npm @bitwarden/cli, pinned in tests/e2e/js), one isolated session each.

Every :class:`Bw` keeps its state in its own BITWARDENCLI_APPDATA_DIR, so two of them are two
devices of the user. Commands run non-interactively; a failing command raises with its output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from tests.support.nodejs import node, node_env, package
from tests.support.tls import TlsFiles

__all__ = ["Bw", "BwError", "encode"]


class BwError(AssertionError):
    """Raised when a bw command exits non-zero; carries what it printed."""

    def __init__(self, args: tuple[str, ...], code: int, stdout: str, stderr: str) -> None:
        super().__init__(args, code, stdout, stderr)
        self.args_run, self.code, self.stdout, self.stderr = args, code, stdout, stderr

    def __str__(self) -> str:
        return f"bw {' '.join(self.args_run)} exited {self.code}:\n{self.stdout}\n{self.stderr}"


def encode(value: Any) -> str:
    """What `bw encode` makes of JSON: the form `bw create` and `bw edit` take."""
    return base64.b64encode(json.dumps(value).encode()).decode()


class Bw:
    def __init__(self, appdata: Path, certs: TlsFiles) -> None:
        self.appdata = appdata
        self.entry = package("@bitwarden/cli") / "build" / "bw.js"
        self.env = {
            **os.environ,
            **node_env(certs.ca_cert),
            "BITWARDENCLI_APPDATA_DIR": str(appdata),
            "BW_NOINTERACTION": "true",
        }
        self.session: str | None = None
        #: Epoch milliseconds at which the last command's process had exited.
        self.returned_at = 0.0
        appdata.mkdir(parents=True, exist_ok=True)

    async def run(self, *args: str) -> str:
        env = self.env if self.session is None else {**self.env, "BW_SESSION": self.session}
        process = await asyncio.create_subprocess_exec(
            node(), str(self.entry), *args, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        self.returned_at = time.time() * 1000
        if process.returncode != 0:
            raise BwError(args, process.returncode or 0, stdout.decode(), stderr.decode())
        return stdout.decode()

    async def json(self, *args: str) -> Any:
        return json.loads(await self.run(*args))

    async def login(self, server_url: str, email: str, password: str) -> None:
        await self.run("config", "server", server_url)
        self.session = (await self.run("login", email, password, "--raw")).strip()

    def device_identifier(self) -> str:
        """The identifier this CLI sends at login (its app id, kept in data.json)."""
        data = json.loads((self.appdata / "data.json").read_text())
        return str(data["global_applicationId_appId"])

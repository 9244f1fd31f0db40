"""An S3-compatible server for the tests: moto's server mode (PyPI moto[server]), run as a real
process on a free loopback port, with a bucket made for the caller."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.processes import ManagedProcess, free_port, wait_until
from tests.support.tools import require

__all__ = ["S3Server", "s3_server"]

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
#: moto accepts any credentials; these are what the pgwarden settings name
ACCESS_KEY, SECRET_KEY = "pgwarden-test", "pgwarden-test-secret"


class S3Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def settings(self, bucket: str) -> dict[str, str]:
        """The environment of a pgwarden process storing its files in bucket."""
        return {"FILE_STORAGE": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": self.url,
                "S3_ACCESS_KEY_ID": ACCESS_KEY, "S3_SECRET_ACCESS_KEY": SECRET_KEY}

    def create_bucket(self, bucket: str) -> None:
        # moto takes an unsigned CreateBucket
        httpx.put(f"{self.url}/{bucket}", timeout=10).raise_for_status()


@contextmanager
def s3_server(log: Path) -> Iterator[S3Server]:
    require(MOTO_SERVER, "moto_server (PyPI moto[server]) is not installed")
    port = free_port()
    process = ManagedProcess("moto", [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), f"moto_server to answer on {port}", alive=process)
        yield S3Server(url)
    finally:
        process.stop()


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True

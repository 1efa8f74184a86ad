"""A local S3 stand-in: ``moto_server`` on 127.0.0.1 (a free port), fake credentials, a bucket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

#: fake credentials: distinctive values, so a test can look for them in every written file
FAKE_KEY_ID = "VRSFAKEKEYID4TESTS"
FAKE_SECRET = "vrsFakeSecret4TestsOnly0123456789abcdef"
BUCKET = "vrs-test-bucket"


@dataclass
class S3:
    endpoint: str  # host:port
    bucket: str
    env: dict[str, str]  # the environment for subprocesses (credentials included)

    def uri(self, prefix: str) -> str:
        """``s3://bucket/prefix?endpoint_override=...&scheme=http`` (no keys: those are in the environment)."""
        return f"s3://{self.bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http"

    def fs(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("moto_server did not start listening")


@pytest.fixture(scope="module")
def _moto(tmp_path_factory):
    """moto_server on 127.0.0.1 (one per test module), its log in a tmp dir."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET}
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        _wait_listening(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3(_moto, monkeypatch) -> S3:
    """Fake AWS credentials in this process and in ``s3.env`` (for subprocesses), and an
    empty bucket on the module's moto server."""
    import pyarrow.fs as pafs

    creds = {
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    admin = pafs.S3FileSystem(
        endpoint_override=_moto, scheme="http", allow_bucket_creation=True, allow_bucket_deletion=True
    )
    if admin.get_file_info(BUCKET).type != pafs.FileType.NotFound:
        admin.delete_dir(BUCKET)  # a clean bucket for every test
    admin.create_dir(BUCKET)
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    return S3(endpoint=_moto, bucket=BUCKET, env={**env, **creds})

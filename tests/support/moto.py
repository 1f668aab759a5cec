"""A throwaway S3 endpoint (moto_server) on a free loopback port, for S3 targets.

moto keeps everything in memory: restart() gives an EMPTY server (no buckets, no repositories).
moto accepts any credentials, so authentication failures cannot be tested against it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.servers import LOOPBACK, free_port

# Dummy credentials: handed to boto3 and to restic explicitly, never put in this process's os.environ
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"


def moto_server_binary() -> str | None:
    """The venv's moto_server (beside sys.executable, unresolved), else the one on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


class MotoServer:
    """moto_server -H 127.0.0.1 -p PORT, its output in a log file."""

    host = LOOPBACK

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.endpoint = f"http://{self.host}:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="opsctl-test-moto-"))
        self.log = self.dir / "moto.log"
        self._process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30) -> MotoServer:
        """Start moto_server and wait until it answers HTTP."""
        if self.running:
            return self
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen([self.binary, "-H", self.host, "-p", str(self.port)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).close()  # noqa: S310 (our http:// loopback)
            except OSError as error:
                if not self.running or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server on {self.endpoint} did not answer ({error}); its log:\n"
                                       f"{self.log.read_text(errors='replace')[-4000:]}") from None
                time.sleep(0.1)
            else:
                return self

    def stop(self) -> None:
        """Stop the server: the port refuses connections, and every bucket is lost."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> MotoServer:
        """Stop and start again on the same port; moto loses all its data (buckets, objects)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- clients -----------------------------------------------------------------------------

    def client(self):
        """A boto3 S3 client for this server, with the dummy credentials."""
        import boto3  # loaded only by tests that use S3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def create_bucket(self, name: str, object_lock: bool = False) -> str:
        """Create a bucket (with Object Lock, which also turns versioning on); return its name."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def repository(self, bucket: str, prefix: str = "") -> str:
        """restic's repository string; use it with `-o s3.bucket-lookup=path` and restic_env()."""
        return f"s3:{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    @staticmethod
    def restic_env() -> dict[str, str]:
        """The credential variables to add to restic's environment (without them restic goes anonymous)."""
        return dict(CREDENTIALS)

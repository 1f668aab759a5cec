"""A throwaway S3 endpoint (moto_server) on a free loopback port, for S3 targets.

moto keeps everything in memory: restart() gives an EMPTY server (no buckets, no repositories).
By default moto accepts any credentials. MotoServer(binary, enforce_iam=True) instead checks every
request against IAM (moto's /moto-api/reset-auth): only keys of IAM users made with iam_user() work,
with the rights of the policy given there; client() then uses an administrator's keys.
MotoServer(binary, tls=Tls(...)) serves https:// with that certificate instead of plain HTTP.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import LOOPBACK, free_port

# Dummy credentials: handed to boto3 and to restic explicitly, never put in this process's os.environ
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
ADMINISTRATOR = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class Tls:
    """The server's certificate and key, and the CA file that vouches for them."""

    cert: Path
    key: Path
    ca: Path


def moto_server_binary() -> str | None:
    """The venv's moto_server (beside sys.executable, unresolved), else the one on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


class MotoServer:
    """moto_server -H 127.0.0.1 -p PORT, its output in a log file."""

    host = LOOPBACK

    def __init__(self, binary: str, enforce_iam: bool = False, tls: Tls | None = None) -> None:
        self.binary = binary
        self.enforce_iam = enforce_iam
        self.tls = tls
        self.credentials = dict(CREDENTIALS)  # an administrator's keys once IAM is enforced
        self.port = free_port()
        self.endpoint = f"{'https' if tls else 'http'}://{self.host}:{self.port}"
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
            tls = ["-s", "-c", str(self.tls.cert), "-k", str(self.tls.key)] if self.tls else []
            self._process = subprocess.Popen([self.binary, "-H", self.host, "-p", str(self.port), *tls],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2,  # noqa: S310 (our loopback server)
                                       context=self._ssl_context()).close()
            except OSError as error:
                if not self.running or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server on {self.endpoint} did not answer ({error}); its log:\n"
                                       f"{self.log.read_text(errors='replace')[-4000:]}") from None
                time.sleep(0.1)
            else:
                if self.enforce_iam:
                    self._enforce_iam()
                return self

    def _enforce_iam(self) -> None:
        """Make an administrator while moto still lets anyone in, then check every later request against IAM."""
        self.credentials = dict(CREDENTIALS)
        self.credentials = self.iam_user("opsctl-test-admin", ADMINISTRATOR)
        # moto counts requests made without a check; 0 means: check from the next request on.
        request = urllib.request.Request(self.endpoint + "/moto-api/reset-auth", data=b"0",  # noqa: S310 (loopback)
                                         method="POST", headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10, context=self._ssl_context()).close()  # noqa: S310 (our loopback)

    def _ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None

    def iam_user(self, name: str, policy: dict) -> dict[str, str]:
        """An IAM user with this inline policy; returns its new keys as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
        import boto3
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"])
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

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

    def client(self, credentials: dict[str, str] | None = None):
        """A boto3 S3 client for this server, with the given keys (default: the dummy or administrator's)."""
        import boto3  # loaded only by tests that use S3
        keys = credentials or self.credentials
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            verify=str(self.tls.ca) if self.tls else None,
                            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])

    def create_bucket(self, name: str, object_lock: bool = False) -> str:
        """Create a bucket (with Object Lock, which also turns versioning on); return its name."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def repository(self, bucket: str, prefix: str = "") -> str:
        """restic's repository string; use it with `-o s3.bucket-lookup=path` and restic_env()."""
        return f"s3:{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    def restic_env(self) -> dict[str, str]:
        """The credential variables to add to restic's environment (without them restic goes anonymous)."""
        return dict(self.credentials)

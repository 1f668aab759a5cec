"""The target fixtures work with real restic 0.14: sshd for sftp, moto_server for S3, a tmpfs to fill.

The sftp and S3 tests run in this order on purpose: each of the first ones leaves its server stopped
or with a changed host key, and the next test checks that its fixture handed the server back usable.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid

import pytest


@pytest.fixture
def restic(restic_binary, tmp_path):
    """Run restic with a throwaway password file and no cache, in a clean environment plus `env`."""
    password = tmp_path / "restic.pass"
    password.write_text("test-" + uuid.uuid4().hex + "\n")

    def run(repository: str, *args: str, options: tuple[str, ...] = (), env: dict | None = None):
        argv = [restic_binary, "-r", repository, "--password-file", str(password), "--no-cache"]
        for option in options:
            argv += ["-o", option]
        clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **(env or {})}
        return subprocess.run([*argv, *args], env=clean, capture_output=True, text=True, timeout=60, check=False)
    return run


def sftp_restic(restic, server, name):
    return lambda *args: restic(server.repository(name), *args, options=(f"sftp.command={server.sftp_command()}",))


def test_sftp_stop_makes_restic_fail_and_restart_brings_it_back(sftp_endpoint, restic):
    run = sftp_restic(restic, sftp_endpoint, "repo-" + uuid.uuid4().hex[:8])
    assert run("init").returncode == 0
    sftp_endpoint.stop()
    failed = run("snapshots")
    assert failed.returncode != 0
    # Usually "Connection refused"; under xdist another worker's new server may already have taken
    # the freed port, and ssh then meets a stranger. Either way restic cannot start an sftp session.
    assert "unable to start the sftp session" in failed.stderr, failed.stderr
    sftp_endpoint.restart()
    assert run("snapshots").returncode == 0, "the repository survives a restart (it is on disk)"
    sftp_endpoint.stop()  # left stopped: the next test's fixture must start it again


def test_rotated_host_key_fails_host_key_checking(sftp_endpoint, restic):
    sftp_endpoint.rotate_host_key()
    ssh = subprocess.run([*sftp_endpoint.ssh_argv(), "true"], capture_output=True, text=True, timeout=30, check=False)
    assert ssh.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in ssh.stderr
    assert sftp_restic(restic, sftp_endpoint, "repo-rotated")("init").returncode != 0
    # left rotated: the next test's fixture must bring the pinned host key back


def test_sftp_repository_init_and_snapshots(sftp_endpoint, restic):
    name = "repo-" + uuid.uuid4().hex[:8]
    run = sftp_restic(restic, sftp_endpoint, name)
    init = run("init")
    assert init.returncode == 0, init.stderr
    assert (sftp_endpoint.root / name / "config").is_file()
    snapshots = run("snapshots", "--json")
    assert snapshots.returncode == 0, snapshots.stderr
    assert snapshots.stdout.strip() == "[]"


def test_s3_repository_init_and_snapshots(s3_endpoint, restic):
    bucket = "bucket-" + uuid.uuid4().hex[:8]
    repository = s3_endpoint.repository(bucket, "crm")
    options = ("s3.bucket-lookup=path",)
    init = restic(repository, "init", options=options, env=s3_endpoint.restic_env())
    assert init.returncode == 0, init.stderr
    snapshots = restic(repository, "snapshots", "--json", options=options, env=s3_endpoint.restic_env())
    assert snapshots.returncode == 0, snapshots.stderr
    assert snapshots.stdout.strip() == "[]"
    keys = s3_endpoint.client().list_objects_v2(Bucket=bucket, Prefix="crm/")["Contents"]
    assert "crm/config" in {key["Key"] for key in keys}, "restic created the bucket and the repository in it"


def test_s3_stop_makes_restic_fail_and_restart_loses_everything(s3_endpoint, restic):
    repository = s3_endpoint.repository(s3_endpoint.create_bucket("bucket-" + uuid.uuid4().hex[:8]))

    def run(*args):
        return restic(repository, *args, options=("s3.bucket-lookup=path",), env=s3_endpoint.restic_env())
    assert run("init").returncode == 0
    s3_endpoint.stop()
    failed = run("snapshots")
    assert failed.returncode != 0 and "connection refused" in failed.stderr
    s3_endpoint.restart()
    assert "bucket does not exist" in run("snapshots").stderr, "moto keeps nothing across a restart"
    assert run("init").returncode == 0
    s3_endpoint.stop()  # left stopped: the next test's fixture must start it again


def test_s3_object_lock_bucket(s3_endpoint):
    bucket = s3_endpoint.create_bucket("locked-" + uuid.uuid4().hex[:8], object_lock=True)
    client = s3_endpoint.client()
    lock = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_small_disk_fills_up(small_disk):
    assert os.path.ismount(small_disk.path)
    with pytest.raises(OSError) as full:  # noqa: PT011 (errno is checked below: locale-free)
        (small_disk.path / "big").write_bytes(b"\0" * (33 << 20))
    assert full.value.errno == errno.ENOSPC
    (small_disk.path / "big").unlink()
    small_disk.fill(leave_bytes=1 << 20)
    assert 0 < small_disk.free_bytes() <= 1 << 20
    small_disk.unmount()
    assert not os.path.ismount(small_disk.path)
    assert list(small_disk.path.iterdir()) == []

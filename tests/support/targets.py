"""Policy target entries for the test servers: one place that knows how each kind is written."""

from __future__ import annotations

import uuid

from tests.support.workspace import Workspace


def sftp_target(server, name: str = "nas", **extra) -> dict:
    return {"name": name, "kind": "sftp", "host": server.host, "port": server.port, "user": server.user,
            "path": str(server.root / f"repo-{uuid.uuid4().hex[:8]}"), "identity_file": str(server.identity_file),
            "known_hosts": str(server.known_hosts), **extra}


def s3_target(moto, workspace: Workspace, name: str = "offsite", bucket: str | None = None, **extra) -> dict:
    workspace.secret("s3.env", "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing-secret")
    # moto serves plain HTTP on loopback: the one case allow_plain_http is for.
    return {"name": name, "kind": "s3", "endpoint": moto.endpoint, "allow_plain_http": True,
            "bucket": bucket or f"crm-{uuid.uuid4().hex[:10]}", "prefix": "crm", "offsite": True,
            "credentials": {"file": "s3.env"}, **extra}


def local_target(name: str = "local", **extra) -> dict:
    return {"name": name, "kind": "local", "path": f"repo-{name}", **extra}

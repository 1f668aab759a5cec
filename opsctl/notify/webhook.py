"""A generic webhook: the event as JSON, signed with HMAC-SHA256 when the policy gives a secret.

The signature covers the timestamp and the body ("<unix seconds>.<body>"), so a receiver that rejects
old timestamps also rejects a captured request sent again later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from opsctl.notify.event import Event
from opsctl.notify.transport import checked_url, post


class Webhook:
    """POSTs event.to_json(); with a secret, adds X-Opsctl-Timestamp and X-Opsctl-Signature: sha256=<hex>."""

    def __init__(self, url: str, secret: bytes | None = None) -> None:
        if secret is not None and not secret:
            raise ValueError("the webhook secret is empty: give a secret or none")
        self.display = checked_url(url)
        self._url = url
        self._secret = secret

    def __repr__(self) -> str:
        return f"Webhook({self.display})"

    def send(self, event: Event, timeout_s: float) -> None:
        """One POST; raises DeliveryFailed."""
        body = json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
        # A retry after an answer that got lost sends the same event again: receivers drop it by this id.
        headers = {"Content-Type": "application/json", "X-Opsctl-Event-Id": f"{event.run_id}:{event.kind}"}
        if self._secret is not None:
            headers |= signature_headers(self._secret, body, int(time.time()))
        post(self._url, body, headers, timeout_s)


def signature_headers(secret: bytes, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers that let a receiver check the body came from a holder of the secret, and when."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Opsctl-Timestamp": str(timestamp), "X-Opsctl-Signature": f"sha256={mac}"}

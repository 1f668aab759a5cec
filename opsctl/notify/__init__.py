"""Notifications of a run's start and end: healthchecks.io pings, signed webhooks, command hooks.

Delivery only: which events go where is the policy's business. Nothing here puts a URL's path or
query, a secret or a body into a message or a log: a healthchecks UUID or a webhook token in a URL is
a capability, and the display name (scheme://host/…) is all that is ever shown.
"""

from __future__ import annotations

from opsctl.notify.channels import Channel, DeliveryFailed
from opsctl.notify.command import CommandHook
from opsctl.notify.delivery import Delivery, deliver
from opsctl.notify.event import MAX_BODY, Event, TargetLine
from opsctl.notify.healthchecks import Healthchecks
from opsctl.notify.webhook import Webhook

__all__ = ["MAX_BODY", "Channel", "CommandHook", "Delivery", "DeliveryFailed", "Event", "Healthchecks", "TargetLine",
           "Webhook", "deliver"]

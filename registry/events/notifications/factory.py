"""The notifier a config asks for, or None: ``moorage serve`` and ``moorage replicate`` import the HTTP
client and the queue only when ``notifications.endpoints`` are configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from configkit import ConfigError
from registry.events.notifications.config import parse_notifications

if TYPE_CHECKING:
    from registry.config import Config
    from registry.events.notifications.notifier import Notifier
    from storage.driver import StorageDriver


def build_notifier(config: Config, driver: StorageDriver) -> Notifier | None:
    """The notifier of ``notifications.endpoints``; None without endpoints, and then its machinery (httpx,
    the queue, the deliveries) is never imported."""
    try:
        settings = parse_notifications(config.notifications)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if settings is None:
        return None
    from registry.events.notifications.notifier import Notifier

    return Notifier(config, settings, driver)

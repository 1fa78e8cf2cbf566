"""Webhook notifications compatible with Distribution's ``notifications.endpoints``, delivered from a
durable queue in storage: ``notifier`` turns the registry's events into queued notification events,
``config`` reads the section, ``events`` shapes Distribution's envelope, ``queue`` keeps it in storage,
``delivery`` sends and retries.  Importing the package loads none of them (the config imports only
``config``, without the HTTP client); ``factory`` builds the notifier, importing the rest only when
endpoints are configured."""

"""Pull-through mirror: namespaces of this registry that cache one or several upstream registries.

``config`` reads the ``proxy`` section, ``upstream`` talks to an upstream (with its auth), ``flight``
shares one upstream fetch between concurrent requests, ``source`` is the upstreams as a content source
(fetch, verify, store, TTL, stale-on-error) and ``repository`` the mirrored repository the /v2
handlers read through, as they read a local one.
"""

"""Pull-through mirror: namespaces of this registry that cache one or several upstream registries.

``config`` reads the ``proxy`` section, ``upstream`` talks to an upstream (with its auth), ``flight``
shares one upstream fetch between concurrent requests, ``cache`` holds the caching rules and
``handlers`` answers the /v2 reads of mirrored repositories.
"""

"""Talking to another registry over HTTP(S): the pull-through mirror's upstreams and replication's remotes
share this client (``client``) and its answers to the remote's auth challenges (``auth``)."""

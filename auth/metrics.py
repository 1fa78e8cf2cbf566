"""Prometheus counters of the built-in token server (labels: a grant type or a fixed refusal reason)."""

from __future__ import annotations

from prometheus_client import Counter

tokens_issued = Counter("moorage_tokens_issued_total", "Tokens the built-in token server issued, by grant "
                        "(basic: GET with Basic or anonymous, password, refresh_token)", ("grant",))
tokens_refused = Counter("moorage_tokens_refused_total", "Token requests refused, by reason", ("reason",))

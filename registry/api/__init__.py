"""HTTP handlers of the /v2 API: thin, they parse and answer; the stores do the work."""

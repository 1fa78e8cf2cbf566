"""The write path: every change to a repository (``writer``), who makes it (``actor``), the rules it must
pass (``policy``, ``quota``, ``references``) and the one event per change it publishes (``events``)."""

"""The web UI served by `moorage serve` at /ui/."""

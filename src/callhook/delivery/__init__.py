"""Delivery: the HTTP sender, the destination guard and per-host circuit breaking."""

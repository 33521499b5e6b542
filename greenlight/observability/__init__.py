"""Logs, metrics and traces: how a platform team sees Greenlight run."""

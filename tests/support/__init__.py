"""Helpers the unit, integration and end-to-end tests share: servers, polling, CLI, training."""

"""``robust-style adapt``: a new artwork from a base network, training only its norms.

Its options are ``train``'s (:mod:`.cmd_train` defines both commands)."""

from __future__ import annotations

from robust_style.cli.cmd_train import register_adapt as register

__all__ = ["register"]

"""Errors raised by the cluster package (orchestration, specs, jobs)."""

from __future__ import annotations


class ClusterError(Exception):
    """Root of every error the cluster package raises on purpose."""


class SpecError(ClusterError):
    """A spec file is missing, unreadable or invalid."""


class RunFailed(ClusterError):
    """A run stopped for good (dead engine, error budget, schema mismatch)."""


class ControlError(ClusterError):
    """Utility control cannot run: incompatible model, empty or invalid target, bad settings."""

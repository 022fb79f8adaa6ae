"""Helpers for the LAN session tests."""


def resource(lan, protocol: str, label: str = "Loopback") -> str:
    """The resource string ``lan`` (app.sim.lan.serve()) printed for one instrument and protocol."""
    return next(e.resource for e in lan.resources if e.protocol == protocol and label in e.label)

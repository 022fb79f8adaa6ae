"""`tmc sim run` plugs the same instruments as the in-process virtual bus."""

import importlib

import app.sim
from app.sim.umockdev.server import DEFAULT_KINDS, KINDS


def test_default_kinds_match_the_default_devices():
    classes = []
    for kind in DEFAULT_KINDS:
        module, name = KINDS[kind].split(":")
        classes.append(getattr(importlib.import_module(module), name))
    assert [type(device) for device in app.sim.default_devices()] == classes

"""The virtual instruments served to the real libusb through umockdev (Linux).

``launcher`` (the project's Python) starts ``server`` (a Python with PyGObject and
UMockdev, usually the system one), which plugs device models from :mod:`app.sim`
into a umockdev testbed; ``testbed`` answers the kernel's usbdevfs ioctls for them
with ``urbs``, following the ABI in ``usbdevfs``. ``cli`` adds ``tmc sim``.

Nothing is imported here, so that importing the launcher never needs gi.
"""

"""The protocol leaf: what USBTMC 1.0, USB488 1.0, IEEE 488.2 and libusb define, written once.

Standard library only, and importing nothing else of the application, so that both the host
core (:mod:`app.usbtmc`) and the virtual instruments' device models (:mod:`app.sim`, which are
also served from the system Python through umockdev) use the same numbers and the same header
layout. Everything above imports from here; nothing here imports from above.
"""

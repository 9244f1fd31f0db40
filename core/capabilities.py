"""What pgwarden tells the clients it can do: one switch per feature they would otherwise offer.

The clients decide what to show from a few signals the server sends. A signal that promises a
feature pgwarden lacks makes them offer something that fails with a 404, so each such signal is
set here, off until the feature exists; the change that adds the feature turns its switch on
here and nowhere else. Read the switches as ``capabilities.NAME`` at the point of use, so that
one assignment (or a test's monkeypatch) changes every answer.
"""

from __future__ import annotations

__all__ = ["LOGIN_WITH_DEVICE", "PREMIUM"]

#: The ``premium`` access-token claim and profile flag. Premium makes the clients offer file
#: attachments, archive, emergency access, file Sends and the premium two-step providers, none of
#: which has endpoints yet. It also unlocks the vault health reports, which the clients do on
#: their own (hidden while this is off), and the TOTP code display, which items keep through
#: ``organizationUseTotp`` (vaultapi/models/ciphers.py).
PREMIUM = False

#: ``/api/devices/knowndevice`` answers whether the device has logged in before; true makes the
#: login page offer "Log in with device", which needs the auth request endpoints.
LOGIN_WITH_DEVICE = False

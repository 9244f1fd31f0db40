"""What pgwarden tells the clients it can do: one switch per feature they would otherwise offer.

The clients decide what to show from a few signals the server sends. A signal that promises a
feature pgwarden lacks makes them offer something that fails with a 404, so each such signal is
set here, off until the feature exists; the change that adds the feature turns its switch on
here and nowhere else. Read the switches as ``capabilities.NAME`` at the point of use, so that
one assignment (or a test's monkeypatch) changes every answer.
"""

from __future__ import annotations

__all__ = ["LOGIN_WITH_DEVICE", "ORGANIZATION_TOTP", "PREMIUM", "organization_features"]

#: The ``premium`` access-token claim and profile flag. Premium makes the clients offer file
#: attachments, archive, emergency access, file Sends and the premium two-step providers, none of
#: which has endpoints yet. It also unlocks the vault health reports, which the clients do on
#: their own (hidden while this is off), and the TOTP code display, which items keep through
#: ``organizationUseTotp`` (vaultapi/models/ciphers.py).
PREMIUM = False

#: ``/api/devices/knowndevice`` answers whether the device has logged in before; true makes the
#: login page offer "Log in with device" (vaultapi/routes/auth_requests.py).
LOGIN_WITH_DEVICE = True

#: An organization's ``useTotp``, and every item's ``organizationUseTotp``: TOTP codes are made by
#: the clients, so items may show them. Off, an organization would also count as a free one, with
#: upgrade prompts.
ORGANIZATION_TOTP = True


def organization_features() -> dict[str, bool]:
    """The feature gates of an organization, as its profile entry and its reply state them.

    The clients show an organization's pages and actions from these; each true one works in
    pgwarden, each false one has no endpoints yet (groups, policies, events, SSO, API keys,
    account recovery, Secrets Manager...)."""
    return {
        "useTotp": ORGANIZATION_TOTP,
        "usePasswordManager": True,
        # the Custom role, with the permissions pgwarden enforces (vaultapi/models/memberships.py)
        "useCustomPermissions": True,
        "selfHost": True,
        # members would be offered the premium features of the clients
        "usersGetPremium": PREMIUM,
        "useGroups": False,
        "useDirectory": False,
        "useEvents": False,
        "use2fa": False,
        "useApi": False,
        "useResetPassword": False,
        "useSecretsManager": False,
        "usePolicies": False,
        "useSso": False,
        "useKeyConnector": False,
        "useScim": False,
        "useActivateAutofillPolicy": False,
        "useRiskInsights": False,
        "useOrganizationDomains": False,
        "useAdminSponsoredFamilies": False,
        "useAutomaticUserConfirmation": False,
        "useDisableSMAdsForUsers": False,
        "usePhishingBlocker": False,
        "useMyItems": False,
        "useInviteLinks": False,
        "usePam": False,
    }

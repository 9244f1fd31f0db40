"""What pgwarden mails, one short plain-text template each.

Codes and links are the only secrets a mail carries; the subject never holds anything a client
chose (organization names go in the body), so no header can be bent by a client.
"""

from __future__ import annotations

from urllib.parse import urlencode

from vaultapi.mail.outbox import Mail

__all__ = [
    "email_change",
    "email_taken",
    "invitation",
    "new_device",
    "password_hint",
    "registration",
    "two_factor_code",
    "two_factor_recovered",
]

_SIGNATURE = "\n\n-- \npgwarden, {domain}\n"


def _mail(recipient: str, subject: str, domain: str, text: str) -> Mail:
    return Mail(recipient, subject, text.strip() + _SIGNATURE.format(domain=domain))


def email_taken(recipient: str, domain: str, new_email: str) -> Mail:
    return _mail(recipient, "Your email was not changed", domain, f"""
Someone asked to move your account to {new_email}, which already has an account, so nothing was
changed. If it was not you, change your master password.
""")


def _vault_link(domain: str, page: str, **params: str) -> str:
    return f"{domain.rstrip('/')}/#/{page}?{urlencode(params)}"


def two_factor_code(recipient: str, domain: str, code: str) -> Mail:
    return _mail(recipient, "Your two-step login code", domain, f"""
Your two-step login code is: {code}

It works once, within 5 minutes. If you did not try to log in, change your master password.
""")


def two_factor_recovered(recipient: str, domain: str) -> Mail:
    return _mail(recipient, "Two-step login turned off", domain, """
Your recovery code was used: two-step login is now off for your account, and a new recovery
code was made. If this was not you, change your master password at once.
""")


def registration(recipient: str, domain: str, token: str) -> Mail:
    link = _vault_link(domain, "finish-signup", token=token, email=recipient, fromEmail="true")
    return _mail(recipient, "Verify your email to finish registering", domain, f"""
Open this link within an hour to choose your master password and finish creating your account:

{link}

If you did not ask for an account, ignore this mail.
""")


def email_change(recipient: str, domain: str, code: str) -> Mail:
    return _mail(recipient, "Your email change code", domain, f"""
To make this address the one of your account, enter this code where you asked for the change:

{code}

It works once, within 5 minutes. If you did not ask for it, ignore this mail.
""")


def password_hint(recipient: str, domain: str, hint: str | None) -> Mail:
    if not hint:
        return _mail(recipient, "Your master password hint", domain, """
Someone asked for the master password hint of your account; it has none.
""")
    return _mail(recipient, "Your master password hint", domain, f"""
Someone asked for the master password hint of your account. It is:

{hint}
""")


def new_device(recipient: str, domain: str, device_name: str, address: str, when: str) -> Mail:
    device_name = "".join(c for c in device_name if c.isprintable())
    return _mail(recipient, "New login to your account", domain, f"""
Your account was just logged in to from a device it had not seen before:

Device: {device_name}
Address: {address}
Time: {when}

If this was not you, change your master password and log out every session from the web vault.
""")


def invitation(recipient: str, domain: str, organization_name: str, link_params: dict[str, str]) -> Mail:
    link = _vault_link(domain, "accept-organization", **link_params)
    return _mail(recipient, "Join an organization", domain, f"""
You are invited to join the organization "{organization_name}". Open this link within 5 days to
accept (you may create an account first):

{link}
""")

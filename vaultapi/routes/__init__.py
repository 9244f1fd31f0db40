"""One Sanic blueprint per area of the Bitwarden API."""

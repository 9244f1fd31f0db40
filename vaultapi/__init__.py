"""The REST API the official Bitwarden clients log into and sync with."""

"""Helpers the tests share: an event listener, a client that does Bitwarden's crypto, tool finders."""

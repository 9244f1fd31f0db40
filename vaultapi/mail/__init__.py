"""Outgoing mail: what each flow sends (messages), the outbox it goes through, and the sender."""

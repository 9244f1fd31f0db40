"""The SignalR notifications hub."""

"""The database: schema migrations, the triggers that publish vault changes, and the event contract.

Both apps depend on this package and on nothing of each other.
"""

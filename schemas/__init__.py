"""Event contracts shared by every part of Outreach Ledger. Imports nothing from the other packages.

Its modules are imported by name (``schemas.events``, ``schemas.parse``, …): the package itself
loads none of them, so a command that needs only the errors does not pay for the event models.
"""

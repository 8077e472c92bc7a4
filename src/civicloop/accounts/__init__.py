"""Accounts: the people who log in to civicloop, their roles, units and grids, and their logins
(use cases and routes over ``core.auth``, which holds the hashing and token primitives)."""

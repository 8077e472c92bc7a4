"""Shared foundation: settings, database, errors, calendar, i18n. Depends on no domain package."""

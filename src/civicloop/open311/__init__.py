"""Open311 GeoReport v2 under ``/open311/v2``: an adapter over the ``requests`` and ``catalog`` domains."""

"""Recovery: nothing landed is silently lost.

`reconcile` squares the bucket with the registry (objects PUT but never registered are adopted,
registered objects whose bytes are gone are marked failed); `replay` lands quarantined events that
today's schema accepts, through the same landing format as the ingest API.
"""

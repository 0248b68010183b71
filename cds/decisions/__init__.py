"""Pharmacists' decisions on alerts: a store that keeps them (append-only, SQLite or
PostgreSQL), the carry-forward that tells each run's alerts new, changed, open, unchanged or
gone, and what travels from them (CSV round trip, FHIR, letters). See docs/review.md."""

from cds.decisions.model import STATES, STATUSES, Decision, Sighting
from cds.decisions.store import DecisionConflict, DecisionStore, StoreError, database_url

__all__ = ["STATES", "STATUSES", "Decision", "DecisionConflict", "DecisionStore", "Sighting",
           "StoreError", "database_url"]

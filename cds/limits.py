"""Bounds on one evaluation's input, so its time and memory stay bounded whatever is sent."""

#: Medication records (orders, statements, dispenses, drafts) one evaluation accepts; more
#: is an error naming the patient (the service answers 413, the panel quarantines).
MAX_MEDICATIONS = 300

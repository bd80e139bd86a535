"""The photo gate and its oversight: every employee view of a customer photo is decided here (purpose,
context, role, grant), delivered watermarked or in full, and written to the audit log (lab.audit) in the
same transaction; the auditor console, its review queue and the anomaly rules read that log back.

It sits above orders and production because deciding a view means knowing them (is the job active, does the
ticket name it, is the order still at the packing station); lab.audit below is the log itself, which every
layer may write to.
"""

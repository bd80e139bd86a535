"""Health, readiness and Prometheus metrics of a lab process (/healthz, /readyz, /metrics).

Reads ids, states and counts only: no check or metric touches a customer's data.
"""

"""Compliance: evaluators per policy, and the evidence chain that makes results tamper-evident."""

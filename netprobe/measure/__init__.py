"""Measurement: the engine and one module per protocol it speaks."""

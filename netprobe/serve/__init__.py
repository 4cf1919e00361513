"""The reference test server (`netprobe serve`)."""

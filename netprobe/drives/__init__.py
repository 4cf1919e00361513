"""Cloud-drive (网盘) throughput probes: one module per access path, one shape for all."""

"""The unattended agent: schedule, validity gates, data budget, one measurement cycle, main loop."""

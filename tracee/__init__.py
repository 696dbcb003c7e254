"""retrograde.tracee"""

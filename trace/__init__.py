"""retrograde.trace"""

"""retrograde.replay"""

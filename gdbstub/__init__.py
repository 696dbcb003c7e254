"""retrograde.gdbstub"""

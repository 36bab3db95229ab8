"""Budgeted early-exit threshold search (numpy + pygad, no torch)."""

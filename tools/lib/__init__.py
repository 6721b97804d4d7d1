"""Modules the stages share (never run as scripts themselves): stages.py, the per-model loop."""

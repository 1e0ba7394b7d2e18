"""The llama.cpp builds the runner loads: what to build (recipe), which CPU variant serves a
load (variants), the proof that a build runs on this machine (selftest) and the runner's loader.

``recipe`` and ``variants`` use the standard library only: ``scripts/setup.sh`` runs them before
the environment holds anything else.
"""

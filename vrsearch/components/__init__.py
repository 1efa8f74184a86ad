"""Pieces shared by methods (METHODS.md, "Shared pieces"): voxel samplers,
memory banks, EMA/CPS teachers, pseudo-labels/entropy and ramp-up schedules.

Import the submodules directly (``from vrsearch.components.banks import
ClassFIFOBank``); this package keeps no imports of its own so that its
modules stay independent of each other.
"""

"""The application layer: the ``blockforge`` command line and the end-to-end flow.

The only package that imports all three lower layers — the software core (``blockforge``), the
hardware (``blockforge_hw``) and the simulation (``blockforge_sim``); nothing below imports it.
"""

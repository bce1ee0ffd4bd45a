"""Transfer learning (``dlexp/conf/transfer/*.yaml``): initial weights and what trains.

:func:`dlexp.transfer.setup.prepare_transfer` is the one call the training path makes. The
package itself imports nothing heavy, so that the up-front checks can use
:mod:`dlexp.transfer.sources` (torch, no Lightning).
"""

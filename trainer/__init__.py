"""Pure torch/numpy room of tailord: decode inputs, build models, run updates.

Import from the modules (``tailord.trainer.model`` and so on); this package re-exports nothing
so that importing one module does not pull in torch where it is not needed.
"""

from __future__ import annotations

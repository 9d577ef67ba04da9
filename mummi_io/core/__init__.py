"""The floor every other part stands on: errors, keys, file-system helpers, and the two contracts.

- :mod:`.errors`: the one exception hierarchy.
- :mod:`.keys`: what a namespace, a key and a pattern are (validation, glob matching).
- :mod:`.fs`: atomic writes and file-system error translation; :mod:`.progress`: progress bars.
- :mod:`.contract`: what a storage backend implements (:class:`~.contract.Backend`) and the
  optional capabilities it may declare.
- :mod:`.coordinator`: what a place where jobs coordinate implements (:class:`~.coordinator.Coordinator`).

Nothing here imports any other part of mummi_io (checked by import-linter).
"""

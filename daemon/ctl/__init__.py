"""``tailorctl`` and its client: imports neither torch, the service nor the trainer."""

"""Updates: the updater (one at a time), its worker processes and their messages, progress."""

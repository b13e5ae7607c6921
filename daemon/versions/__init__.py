"""Versions: publishing, start-up repair, history (rollback, pin, garbage), serving."""

"""The inbox: its layout, opening entries safely, rejecting them, watching, settling, ingesting."""

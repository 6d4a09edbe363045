"""FastAPI application: the composition root. Nothing imports ``web``."""

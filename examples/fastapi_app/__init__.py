"""A FastAPI chat API on sessiondb: see README.md beside this file."""

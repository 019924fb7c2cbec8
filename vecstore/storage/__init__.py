"""Storage: the only package that imports SQLAlchemy and faiss."""

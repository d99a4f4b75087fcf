"""The foundation every stage uses: errors, atomic files, output locks, provenance hashes,
worker processes. It imports nothing else from the package."""

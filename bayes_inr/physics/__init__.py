"""The measurement: parallel-beam geometry, the Radon operator, and the memory guard."""

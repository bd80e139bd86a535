"""Scale benchmark: 10,000 4x6 prints through 100 simulated minilabs on one machine (README.md here)."""
